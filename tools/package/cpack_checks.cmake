# Read by cpack for each generator it runs: a .deb without dpkg-shlibdeps
# would be made with no Depends at all (CPack only says so), so it is refused.
if(CPACK_GENERATOR STREQUAL "DEB")
  find_program(MEMSCOPE_DPKG_SHLIBDEPS dpkg-shlibdeps)
  if(NOT MEMSCOPE_DPKG_SHLIBDEPS)
    message(FATAL_ERROR "cpack -G DEB needs dpkg-shlibdeps for the package's Depends: apt-get install dpkg-dev")
  endif()
endif()
