# TensorRT plugin library of specdeploy: libspecdeploy_trt.so (IPluginV3 adapters over the C ABI).
#
# Included by plugins/CMakeLists.txt when SPECDEPLOY_BUILD_TRT=ON, after the kernel library targets
# (specdeploy_kernels for CUDA, specdeploy_host for the CPU) are defined:
#     cmake -S plugins -B build/plugins -DSPECDEPLOY_BUILD_TRT=ON [-DTensorRT_ROOT=/opt/TensorRT-10.x]
#     cmake --build build/plugins -j
#
# Inputs (cache variables or environment):
#   TensorRT_ROOT / TENSORRT_ROOT   install prefix (include/, lib/) of a tarball TensorRT
#   TENSORRT_INCLUDE_DIR            directory holding NvInferRuntime.h (found automatically on JetPack:
#                                   /usr/include/aarch64-linux-gnu, and x86 deb installs:
#                                   /usr/include/x86_64-linux-gnu)
#   SPECDEPLOY_TRT_LINK_NVINFER     link libnvinfer if found (default ON). The plugins call no libnvinfer
#                                   symbol (all TensorRT interfaces they use are virtual or inline), so
#                                   the library also builds and loads when only headers are present.
# Targets:
#   specdeploy_trt_objects   OBJECT library of the plugin sources: the compile-only check, builds with
#                            TensorRT + CUDA headers alone (no libnvinfer, no kernel library)
#   specdeploy_trt           SHARED library libspecdeploy_trt.so, linked to specdeploy_kernels; exports
#                            only getCreators() and setLoggerFinder()
#   specdeploy_trt_host_test host test of the adapters against specdeploy_host (CTest: trt_plugin_host)
#   specdeploy_trt_dlopen_test  dlopen()s libspecdeploy_trt.so, checks the exported entry points
#                            (CTest: trt_plugin_dlopen; needs the kernel library's CUDA runtime to load)
#   specdeploy_trt_syntax    runs plugins/tools/check_trt_headers.sh on TENSORRT_INCLUDE_DIR
include_guard(GLOBAL)

set(_sd_trt_plugins_dir "${CMAKE_CURRENT_LIST_DIR}/..")
get_filename_component(_sd_trt_plugins_dir "${_sd_trt_plugins_dir}" ABSOLUTE)

option(SPECDEPLOY_TRT_LINK_NVINFER "Link libspecdeploy_trt.so against libnvinfer when it is found" ON)

if(NOT TensorRT_ROOT)
  if(TENSORRT_ROOT)
    set(TensorRT_ROOT "${TENSORRT_ROOT}")
  elseif(DEFINED ENV{TensorRT_ROOT})
    set(TensorRT_ROOT "$ENV{TensorRT_ROOT}")
  elseif(DEFINED ENV{TENSORRT_ROOT})
    set(TensorRT_ROOT "$ENV{TENSORRT_ROOT}")
  endif()
endif()
if(NOT TENSORRT_INCLUDE_DIR AND DEFINED ENV{TENSORRT_INCLUDE_DIR})
  set(TENSORRT_INCLUDE_DIR "$ENV{TENSORRT_INCLUDE_DIR}" CACHE PATH "Directory with NvInferRuntime.h")
endif()

find_path(TENSORRT_INCLUDE_DIR NvInferRuntime.h
  HINTS "${TensorRT_ROOT}/include"
  PATHS /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/local/TensorRT/include
        /usr/local/tensorrt/include /opt/tensorrt/include /usr/include
  DOC "Directory with NvInferRuntime.h")

if(NOT TENSORRT_INCLUDE_DIR)
  message(WARNING "specdeploy: SPECDEPLOY_BUILD_TRT=ON but NvInferRuntime.h was not found: set TensorRT_ROOT "
                  "or TENSORRT_INCLUDE_DIR. The TensorRT plugin library is not built.")
  return()
endif()

# Version, for the log and for the library's SOVERSION-free name check.
set(SPECDEPLOY_TRT_VERSION "unknown")
if(EXISTS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h")
  file(STRINGS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h" _sd_trt_ver_lines
       REGEX "^#define (NV_TENSORRT_(MAJOR|MINOR|PATCH)|TRT_(MAJOR|MINOR|PATCH)_ENTERPRISE) [0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    set(_sd_trt_${_part} "")
    foreach(_line IN LISTS _sd_trt_ver_lines)
      if(_line MATCHES "^#define (NV_TENSORRT_${_part}|TRT_${_part}_ENTERPRISE) ([0-9]+)")
        set(_sd_trt_${_part} "${CMAKE_MATCH_2}")
      endif()
    endforeach()
  endforeach()
  set(SPECDEPLOY_TRT_VERSION "${_sd_trt_MAJOR}.${_sd_trt_MINOR}.${_sd_trt_PATCH}")
endif()

# CUDA headers: TensorRT's headers include cuda_runtime_api.h.
set(_sd_trt_cuda_inc "")
if(NOT CUDAToolkit_FOUND)
  find_package(CUDAToolkit QUIET)
endif()
if(CUDAToolkit_FOUND)
  set(_sd_trt_cuda_inc ${CUDAToolkit_INCLUDE_DIRS})
else()
  find_path(_sd_trt_cuda_rt_inc cuda_runtime_api.h
    HINTS "$ENV{CUDA_HOME}/include" "$ENV{CUDA_PATH}/include"
    PATHS /usr/local/cuda/include /usr/include)
  if(_sd_trt_cuda_rt_inc)
    set(_sd_trt_cuda_inc "${_sd_trt_cuda_rt_inc}")
  endif()
endif()
if(NOT _sd_trt_cuda_inc)
  message(WARNING "specdeploy: cuda_runtime_api.h not found (TensorRT headers need it): the TensorRT plugin "
                  "library is not built.")
  return()
endif()

find_library(TENSORRT_NVINFER_LIBRARY nvinfer
  HINTS "${TensorRT_ROOT}/lib" "${TensorRT_ROOT}/lib64"
  PATHS /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/TensorRT/lib /opt/tensorrt/lib)

message(STATUS "specdeploy: TensorRT ${SPECDEPLOY_TRT_VERSION} headers in ${TENSORRT_INCLUDE_DIR}; "
               "libnvinfer: ${TENSORRT_NVINFER_LIBRARY}")

set(SPECDEPLOY_TRT_SOURCES
  "${_sd_trt_plugins_dir}/trt_common/trtCommon.cpp"
  "${_sd_trt_plugins_dir}/trt_common/pluginEntry.cpp"
  "${_sd_trt_plugins_dir}/spec_conv/trt/SpecConvPlugin.cpp"
  "${_sd_trt_plugins_dir}/spec_pool/trt/SpecPoolPlugin.cpp"
  "${_sd_trt_plugins_dir}/spec_to_spatial/trt/SpecToSpatialPlugin.cpp"
  "${_sd_trt_plugins_dir}/spec_concat/trt/SpecConcatPlugin.cpp")

add_library(specdeploy_trt_objects OBJECT ${SPECDEPLOY_TRT_SOURCES})
target_compile_features(specdeploy_trt_objects PUBLIC cxx_std_17)
set_target_properties(specdeploy_trt_objects PROPERTIES
  CXX_EXTENSIONS OFF
  POSITION_INDEPENDENT_CODE ON
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON)
target_include_directories(specdeploy_trt_objects
  PUBLIC "${_sd_trt_plugins_dir}" "${_sd_trt_plugins_dir}/trt_common" "${_sd_trt_plugins_dir}/common/include")
# TensorRT/CUDA as system headers: their deprecation warnings are not ours.
target_include_directories(specdeploy_trt_objects SYSTEM PUBLIC "${TENSORRT_INCLUDE_DIR}" ${_sd_trt_cuda_inc})
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(specdeploy_trt_objects PRIVATE -Wall -Wextra)
endif()

if(TARGET specdeploy_kernels)
  add_library(specdeploy_trt SHARED $<TARGET_OBJECTS:specdeploy_trt_objects>)
  set_target_properties(specdeploy_trt PROPERTIES
    OUTPUT_NAME specdeploy_trt
    LINKER_LANGUAGE CXX
    BUILD_RPATH "\$ORIGIN"
    INSTALL_RPATH "\$ORIGIN")
  target_link_libraries(specdeploy_trt PRIVATE specdeploy_kernels)
  if(SPECDEPLOY_TRT_LINK_NVINFER AND TENSORRT_NVINFER_LIBRARY)
    target_link_libraries(specdeploy_trt PRIVATE "${TENSORRT_NVINFER_LIBRARY}")
  endif()
  if(NOT APPLE AND NOT WIN32)
    # Every symbol resolved at link time (kernel library, libstdc++); none left for the loader to guess.
    # Export the two entry points only (not even std:: template instances), so several plugin libraries
    # in one process never interpose on each other.
    set(_sd_trt_map "${CMAKE_CURRENT_BINARY_DIR}/specdeploy_trt.map")
    file(WRITE "${_sd_trt_map}" "{\n  global: getCreators; setLoggerFinder;\n  local: *;\n};\n")
    target_link_options(specdeploy_trt PRIVATE "LINKER:--no-undefined" "LINKER:--version-script=${_sd_trt_map}")
    set_property(TARGET specdeploy_trt APPEND PROPERTY LINK_DEPENDS "${_sd_trt_map}")
  endif()
  add_executable(specdeploy_trt_dlopen_test "${_sd_trt_plugins_dir}/trt_common/tests/trt_dlopen_test.cpp")
  target_compile_features(specdeploy_trt_dlopen_test PRIVATE cxx_std_17)
  target_include_directories(specdeploy_trt_dlopen_test SYSTEM PRIVATE "${TENSORRT_INCLUDE_DIR}" ${_sd_trt_cuda_inc})
  target_link_libraries(specdeploy_trt_dlopen_test PRIVATE ${CMAKE_DL_LIBS})
  if(COMMAND add_test)
    add_test(NAME trt_plugin_dlopen COMMAND specdeploy_trt_dlopen_test $<TARGET_FILE:specdeploy_trt>)
  endif()
else()
  message(STATUS "specdeploy: no specdeploy_kernels target (no CUDA toolkit?): only the compile check "
                 "target specdeploy_trt_objects is built, not libspecdeploy_trt.so")
endif()

if(TARGET specdeploy_host)
  add_executable(specdeploy_trt_host_test "${_sd_trt_plugins_dir}/trt_common/tests/trt_plugin_host_test.cpp")
  # Linking the OBJECT library brings its objects and its include directories.
  target_link_libraries(specdeploy_trt_host_test PRIVATE specdeploy_trt_objects specdeploy_host)
  if(COMMAND add_test)
    add_test(NAME trt_plugin_host COMMAND specdeploy_trt_host_test)
  endif()
endif()

find_program(_sd_trt_bash bash)
if(_sd_trt_bash)
  add_custom_target(specdeploy_trt_syntax
    COMMAND ${CMAKE_COMMAND} -E env "CXX=${CMAKE_CXX_COMPILER}" "CUDA_INCLUDE_DIR=${_sd_trt_cuda_inc}"
            "${_sd_trt_bash}" "${_sd_trt_plugins_dir}/tools/check_trt_headers.sh" "${TENSORRT_INCLUDE_DIR}"
    COMMENT "Compile-checking the TensorRT plugin sources against ${TENSORRT_INCLUDE_DIR}"
    VERBATIM)
endif()
