# Toolchain file for the arm64/armhf cross builds (scripts/cross.sh): Debian's cross gcc
# (gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf) with the C library it brings, and the
# target's other libraries from a private sysroot of Debian packages unpacked with dpkg -x
# (no dpkg --add-architecture). Tests run under qemu-user with that sysroot as the loader
# prefix, so ld.so and libc.so come from the same libc6 package.
#   -DSTATION_CROSS_TRIPLET=aarch64-linux-gnu -DSTATION_SYSROOT=DIR -DSTATION_QEMU=qemu-aarch64
set(CMAKE_TRY_COMPILE_PLATFORM_VARIABLES STATION_CROSS_TRIPLET STATION_SYSROOT STATION_QEMU)
set(CMAKE_SYSTEM_NAME Linux)
if(STATION_CROSS_TRIPLET MATCHES "^aarch64")
  set(CMAKE_SYSTEM_PROCESSOR aarch64)
  set(STATION_DEB_ARCH arm64 CACHE STRING "Debian architecture of the package")
elseif(STATION_CROSS_TRIPLET MATCHES "^arm.*hf$")
  set(CMAKE_SYSTEM_PROCESSOR armv7l)
  set(STATION_DEB_ARCH armhf CACHE STRING "Debian architecture of the package")
else()
  message(FATAL_ERROR "cross-linux.cmake: unknown STATION_CROSS_TRIPLET '${STATION_CROSS_TRIPLET}'")
endif()
set(CMAKE_C_COMPILER ${STATION_CROSS_TRIPLET}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${STATION_CROSS_TRIPLET})

# A sysroot with its own C library (libc6-dev: the Debian 13 sysroots, whose libraries need
# its newer glibc) is the compiler's --sysroot; otherwise the compiler keeps the C library
# of Debian 12's libc6-dev-*-cross and the sysroot adds the other libraries.
if(EXISTS ${STATION_SYSROOT}/usr/lib/${STATION_CROSS_TRIPLET}/crt1.o)
  set(CMAKE_SYSROOT ${STATION_SYSROOT})
endif()
set(CMAKE_FIND_ROOT_PATH ${STATION_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
if(NOT CMAKE_SYSROOT)
  set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES
    ${STATION_SYSROOT}/usr/include/${STATION_CROSS_TRIPLET} ${STATION_SYSROOT}/usr/include)
endif()
# Shared libraries' own dependencies (libusb -> libudev) are found at link time here.
set(CMAKE_EXE_LINKER_FLAGS_INIT
  "-Wl,-rpath-link,${STATION_SYSROOT}/usr/lib/${STATION_CROSS_TRIPLET} -Wl,-rpath-link,${STATION_SYSROOT}/lib/${STATION_CROSS_TRIPLET}")
if(CMAKE_SYSROOT)
  # Debian's cross gcc searches its own /usr/<triplet>/lib (Debian 12's libc) before the
  # sysroot: put the sysroot's libc first, or Debian 13's libraries miss GLIBC_2.38.
  string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT " -L${STATION_SYSROOT}/usr/lib/${STATION_CROSS_TRIPLET}")
endif()

# pkg-config reads the sysroot's .pc files and prefixes their paths with it.
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${STATION_SYSROOT})
set(ENV{PKG_CONFIG_LIBDIR}
  "${STATION_SYSROOT}/usr/lib/${STATION_CROSS_TRIPLET}/pkgconfig:${STATION_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

if(STATION_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${STATION_QEMU} -L ${STATION_SYSROOT})
endif()
