# What `cmake --install` and `make deb` ship: the four binaries, libferry (a
# shared library holding the client and worker C APIs), the headers they
# need, ferry.pc and man pages made from each binary's --help.
#
# libferry is the static libraries behind include/ferry/client.h and
# include/ferry/worker.h, whole: ferry_client, ferry_worker, ferry_common and
# the generated protobuf code. The binaries keep linking the static
# libraries, so they run without libferry installed.
include(GNUInstallDirs)

set(FERRY_LIB_PARTS ferry_client ferry_worker ferry_common)
set_target_properties(${FERRY_LIB_PARTS} PROPERTIES POSITION_INDEPENDENT_CODE ON)

# The file is libferry.so.<version>, its soname libferry.so.<major>. The
# generated code is its one source of its own (compiled again, PIC, with
# ferry_proto's -w); the rest comes whole from the static libraries.
add_library(ferry_shared SHARED ${FERRY_PB_DIR}/ferry.pb-c.c)
target_compile_options(ferry_shared PRIVATE -w)
set_target_properties(ferry_shared PROPERTIES
  OUTPUT_NAME ferry
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR})
# --no-undefined: every library it needs is on its link line (and in ferry.pc).
target_link_options(ferry_shared PRIVATE -Wl,--no-undefined)
# Only the API of include/ferry/ is exported (cmake/libferry.map); the rest of
# the static libraries stays inside.
target_link_options(ferry_shared PRIVATE -Wl,--version-script=${CMAKE_SOURCE_DIR}/cmake/libferry.map)
set_property(TARGET ferry_shared APPEND PROPERTY LINK_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/libferry.map)
# The archives by file, not as targets: CMake refuses $<LINK_LIBRARY:WHOLE_ARCHIVE>
# on ferry_common, which ferry_client and ferry_worker also link without it.
set(FERRY_LIB_ARCHIVES "")
foreach(part ${FERRY_LIB_PARTS})
  list(APPEND FERRY_LIB_ARCHIVES $<TARGET_FILE:${part}>)
endforeach()
add_dependencies(ferry_shared ${FERRY_LIB_PARTS})
target_link_libraries(ferry_shared PRIVATE
  -Wl,--whole-archive ${FERRY_LIB_ARCHIVES} -Wl,--no-whole-archive
  PkgConfig::ZMQ PkgConfig::PROTOBUFC m)
set_property(TARGET ferry_shared APPEND PROPERTY LINK_DEPENDS ${FERRY_LIB_ARCHIVES})

install(TARGETS ferry-broker ferry-engine ferry-worker ferry
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ferry_shared
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# The public headers stand alone: no header of lib/, no zmq.h, no generated
# protobuf header (tests/install/install_test.sh builds with these only).
install(FILES ${CMAKE_SOURCE_DIR}/include/ferry/client.h ${CMAKE_SOURCE_DIR}/include/ferry/worker.h
  ${CMAKE_SOURCE_DIR}/include/ferry/value.h ${CMAKE_SOURCE_DIR}/include/ferry/timer.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ferry)

# ferry.pc finds its prefix from where it lies (${pcfiledir}): the same file
# serves `cmake --install --prefix anywhere` and the .deb's /usr.
file(RELATIVE_PATH FERRY_PC_TO_PREFIX
  /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" FERRY_PC_TO_PREFIX "${FERRY_PC_TO_PREFIX}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/ferry.pc.in ${CMAKE_BINARY_DIR}/ferry.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/ferry.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Man pages from --help, at build time (the binaries must run on the build
# machine), gzipped as Debian ships them (-n: the same bytes on every build).
set(FERRY_MAN_DIR ${CMAKE_BINARY_DIR}/man)
set(FERRY_MAN_PAGES "")
foreach(prog ferry-broker ferry-engine ferry-worker ferry)
  set(page ${FERRY_MAN_DIR}/${prog}.1.gz)
  add_custom_command(
    OUTPUT ${page}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${FERRY_MAN_DIR}
    COMMAND sh ${CMAKE_SOURCE_DIR}/cmake/man-from-help.sh $<TARGET_FILE:${prog}>
            ${PROJECT_VERSION} ${page}
    DEPENDS ${prog} ${CMAKE_SOURCE_DIR}/cmake/man-from-help.sh
    COMMENT "man page ${prog}.1")
  list(APPEND FERRY_MAN_PAGES ${page})
endforeach()
add_custom_target(ferry_man ALL DEPENDS ${FERRY_MAN_PAGES})
install(FILES ${FERRY_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

# `make deb`: cpack -G DEB in the build folder gives ferry_<version>_<arch>.deb.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VENDOR "Ferry")
set(CPACK_PACKAGE_CONTACT "Ferry maintainers <ferry@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "Lua scripts calling slow async functions as blocking calls, over ZeroMQ")
set(CPACK_PACKAGE_DESCRIPTION
  "ferry-broker, ferry-engine, ferry-worker and the ferry client; libferry, the C API for clients and workers of one's own, with its headers and ferry.pc.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Depends: from what the binaries and libferry link (dpkg-shlibdeps).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# A shlibs file for libferry.so.0, and the ldconfig trigger with it.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
# http.get and http.request of ferry-worker check TLS peers against them.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS ca-certificates)
# The headers include <zmq.h> and <protobuf-c/protobuf-c.h> (ferry.pc: Requires.private).
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libzmq3-dev, libprotobuf-c-dev, pkg-config")
include(CPack)
