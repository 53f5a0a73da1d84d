# engine_add_decoder_plugin(<name> SOURCES <src>...): one model plugin on the shared decoder
# (plugins/common/decoder_model.hpp), registered with ENGINE_REGISTER_DECODER. Its `init-model` presets are
# the presets/<preset>.json files beside its sources, embedded at build time as decoder_presets.hpp.
# Builds the plugin into ${ENGINE_BUILD_PLUGIN_DIR} and installs it, like every in-tree plugin.
include_guard(GLOBAL)

function(engine_add_decoder_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  set(_embed ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/embed_presets.cmake)
  set(_presets_dir ${CMAKE_CURRENT_SOURCE_DIR}/presets)
  file(GLOB _preset_files CONFIGURE_DEPENDS ${_presets_dir}/*.json)
  set(_generated ${CMAKE_CURRENT_BINARY_DIR}/generated/decoder_presets.hpp)
  add_custom_command(OUTPUT ${_generated}
    COMMAND ${CMAKE_COMMAND} -DPRESETS=${_presets_dir} -DOUT=${_generated} -P ${_embed}
    DEPENDS ${_embed} ${_preset_files}
    COMMENT "Embedding the ${name} presets")
  engine_add_plugin(${name} SOURCES ${ARG_SOURCES} ${_generated} OUTPUT_DIRECTORY ${ENGINE_BUILD_PLUGIN_DIR})
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/generated)
  target_link_libraries(${name} PRIVATE engine_plugin_decoder)
  engine_warnings(${name})
  set(ENGINE_PLUGIN_TARGETS ${ENGINE_PLUGIN_TARGETS} ${name} CACHE INTERNAL "")
  install(TARGETS ${name} LIBRARY DESTINATION ${ENGINE_PLUGIN_INSTALL_DIR})
endfunction()
