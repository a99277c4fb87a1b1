# Like Eigen 5's version file: a request for another major version is refused,
# which is why scaltra asks for no version and checks it itself.
set(PACKAGE_VERSION ${FAKE_EIGEN3_VERSION})
string(REGEX MATCH "^[0-9]+" _major "${PACKAGE_VERSION}")
if(PACKAGE_FIND_VERSION AND NOT PACKAGE_FIND_VERSION_MAJOR EQUAL _major)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
