# memscope-trace installed as a tool (cmake --install) and packaged as a
# .deb (cpack -G DEB): the binary, the tracker headers targets include, the
# man page and the bash and zsh completions, the license, copyright and README.
include(GNUInstallDirs)
# cmake --install and cpack take what the build made (cmake --build first):
# packaging never rebuilds the tests. The `package` target builds, then packages.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

# The man page and the completions are generated from the binary's own
# command line (`memscope-trace --generate`, the CLI11 definitions --help
# prints), written whole or not at all. Debian ships man pages gzipped
# (-n: no name or time in the header, so the same page is the same file).
find_program(GZIP gzip REQUIRED)
set(MEMSCOPE_DOCS ${CMAKE_BINARY_DIR}/memscope-trace.1 ${CMAKE_BINARY_DIR}/memscope-trace.1.gz
    ${CMAKE_BINARY_DIR}/memscope-trace.bash-completion ${CMAKE_BINARY_DIR}/_memscope-trace)
add_custom_command(
  OUTPUT ${MEMSCOPE_DOCS}
  COMMAND memscope-trace --generate man > memscope-trace.1.tmp
  COMMAND ${CMAKE_COMMAND} -E rename memscope-trace.1.tmp memscope-trace.1
  COMMAND ${GZIP} -9 -n -c memscope-trace.1 > memscope-trace.1.gz.tmp
  COMMAND ${CMAKE_COMMAND} -E rename memscope-trace.1.gz.tmp memscope-trace.1.gz
  COMMAND memscope-trace --generate bash > memscope-trace.bash-completion.tmp
  COMMAND ${CMAKE_COMMAND} -E rename memscope-trace.bash-completion.tmp memscope-trace.bash-completion
  COMMAND memscope-trace --generate zsh > _memscope-trace.tmp
  COMMAND ${CMAKE_COMMAND} -E rename _memscope-trace.tmp _memscope-trace
  DEPENDS memscope-trace
  WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
  COMMENT "Generating the man page and the bash and zsh completions from memscope-trace's command line")
add_custom_target(memscope_docs ALL DEPENDS ${MEMSCOPE_DOCS})

install(TARGETS memscope-trace RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/probes/include/memscope/track.h ${CMAKE_SOURCE_DIR}/probes/include/memscope/probe_abi.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/memscope)
install(FILES ${CMAKE_BINARY_DIR}/memscope-trace.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_BINARY_DIR}/memscope-trace.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME memscope-trace)
install(FILES ${CMAKE_BINARY_DIR}/_memscope-trace DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES ${CMAKE_SOURCE_DIR}/LICENSE ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_CURRENT_LIST_DIR}/copyright
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# --- the .deb ------------------------------------------------------------------
# Depends come from dpkg-shlibdeps (dpkg-dev: needed to package, not to build).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME memscope-trace)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "memscope-trace maintainers <maintainers@users.noreply.r-seed-0a6233af.example>"
    CACHE STRING "the .deb's Maintainer")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "memory tracer for Linux processes, with uprobes and BPF")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION [[memscope-trace traces a running process's heap (-p PID), a command's from
its first instruction (run), or every process's memory (-a), from outside:
uprobes on the allocator feed BPF maps, and the report gives exact
per-thread figures, allocation sites, leaks and timelines (text, JSON, HTML,
folded stacks, pprof). The traced program needs no rebuild and no library;
the tracker header lets a program name its variables, scopes and tasks.]])
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # memscope-trace_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON) # the build keeps its debug information; the package does not
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_SOURCE_DIR}/LICENSE)
set(CPACK_RESOURCE_FILE_README ${CMAKE_SOURCE_DIR}/README.md)
# Checked when cpack runs: without dpkg-shlibdeps CPack would leave Depends empty.
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_LIST_DIR}/cpack_checks.cmake)
include(CPack)
