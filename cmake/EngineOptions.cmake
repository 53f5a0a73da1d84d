# Build options shared by every target: ccache, warnings as errors, CUDA detection.

find_program(ENGINE_CCACHE ccache)
if(ENGINE_CCACHE)
  set(CMAKE_C_COMPILER_LAUNCHER ${ENGINE_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${ENGINE_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${ENGINE_CCACHE})
endif()

# engine_warnings(target): the project's warning set, as errors unless ENGINE_WERROR=OFF.
function(engine_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra -Wpedantic>
    $<$<AND:$<COMPILE_LANGUAGE:C,CXX>,$<BOOL:${ENGINE_WERROR}>>:-Werror>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${ENGINE_WERROR}>>:-Werror=all-warnings>)
endfunction()

# CUDA: AUTO builds the backend when nvcc is found. Default architecture sm_90a (H100/H200).
set(ENGINE_HAVE_CUDA OFF)
if(NOT ENGINE_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(_engine_nvcc nvcc HINTS /usr/local/cuda/bin ENV CUDA_HOME PATH_SUFFIXES bin)
    if(_engine_nvcc)
      set(CMAKE_CUDA_COMPILER ${_engine_nvcc})
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90a)
    endif()
    enable_language(CUDA)
    # CMake before 3.26 knows no C++20 flag for nvcc (nvcc 12+ accepts -std=c++20): give it one.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(ENGINE_HAVE_CUDA ON)
  elseif(ENGINE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "ENGINE_CUDA=ON but nvcc was not found: install the CUDA toolkit or set CMAKE_CUDA_COMPILER")
  endif()
endif()
message(STATUS "engine: CUDA backend ${ENGINE_HAVE_CUDA} (ENGINE_CUDA=${ENGINE_CUDA}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
