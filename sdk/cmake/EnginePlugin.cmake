# engine_add_plugin(<target> SOURCES <src>... [OUTPUT_DIRECTORY <dir>] [INSTALL_DESTINATION <dir>] [NO_INSTALL])
#
# Builds a plugin shared library against the SDK only: hidden visibility, and a linker version script that
# exports exactly one symbol, engine_plugin_negotiate (std:: template instantiations would otherwise be
# exported as weak symbols and could bind across plugins). Used in-tree and by the installed EngineSDK package.
#
# In the engine's own tree the library goes to ${ENGINE_BUILD_PLUGIN_DIR} (build/lib/engine/plugins, where the
# build tree's engine finds it) and is installed to ${ENGINE_PLUGIN_INSTALL_DIR}. Out of tree, give
# INSTALL_DESTINATION (e.g. ${EngineSDK_PLUGIN_DIR}) to install it; ENGINE_PLUGIN_PATH can point anywhere.

function(engine_add_plugin target)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY;INSTALL_DESTINATION" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "engine_add_plugin(${target}): SOURCES is required")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE EngineSDK::sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PRIVATE cxx_std_17)
  set(_script "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/plugin.version")
  target_link_options(${target} PRIVATE "LINKER:--version-script=${_script}" "LINKER:--no-undefined")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${_script}")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  elseif(DEFINED ENGINE_BUILD_PLUGIN_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ENGINE_BUILD_PLUGIN_DIR}")
  endif()
  if(NOT ARG_NO_INSTALL)
    if(ARG_INSTALL_DESTINATION)
      install(TARGETS ${target} LIBRARY DESTINATION "${ARG_INSTALL_DESTINATION}")
    elseif(DEFINED ENGINE_PLUGIN_INSTALL_DIR)
      install(TARGETS ${target} LIBRARY DESTINATION "${ENGINE_PLUGIN_INSTALL_DIR}")
    endif()
  endif()
endfunction()
