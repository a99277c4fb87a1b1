# A stand-in Eigen package of any version (-DFAKE_EIGEN3_VERSION=…), over the
# real headers, to test scaltra's version check without installing other Eigens.
set(Eigen3_VERSION ${FAKE_EIGEN3_VERSION})
if(NOT TARGET Eigen3::Eigen)
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${FAKE_EIGEN3_INCLUDE_DIR}")
endif()
