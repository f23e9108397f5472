# What `cmake --install` puts where, and the .deb CPack makes of it (packaging/ holds the
# unit, sysusers file, maintainer scripts, copyright and changelog).
#   bin/station, bin/station-sim
#   share/station/{fixtures,jobs}/     example fixtures and jobs (the search path's share
#                                      directory, station/paths.h), jobs/generated/ image
#   lib/udev/rules.d/60-station.rules  lib/systemd/system/station@.service
#   lib/sysusers.d/station.conf        share/man/man1/station{,-sim}.1.gz
#   share/bash-completion/completions/station{,-sim}   share/doc/station/
include(GNUInstallDirs)

install(TARGETS station station-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
set(STATION_SHARE ${CMAKE_INSTALL_DATADIR}/station)
install(FILES fixtures/virtual.yaml fixtures/virtual-can.yaml fixtures/example-pi.yaml
              fixtures/rig.yaml fixtures/README.md
        DESTINATION ${STATION_SHARE}/fixtures)
# Jobs that run from the installed files alone (the others pin ../shared firmware).
install(FILES jobs/demo-usb-dfu.yaml jobs/README.md DESTINATION ${STATION_SHARE}/jobs)

# Things made by running the freshly built binaries (through the emulator when cross
# compiling): the demo job's synthetic image and the man pages.
set(STATION_RUN_EMU ${CMAKE_CROSSCOMPILING_EMULATOR})
string(JOIN " " STATION_RUN_EMU_SH ${CMAKE_CROSSCOMPILING_EMULATOR})
set(gen ${CMAKE_BINARY_DIR}/generated)
file(MAKE_DIRECTORY ${gen})
add_custom_command(OUTPUT ${gen}/demo-combined.bin
  COMMAND ${CMAKE_COMMAND} -E make_directory ${gen}
  COMMAND ${STATION_RUN_EMU} $<TARGET_FILE:station> image generate ${gen}/demo-combined.bin
  DEPENDS station VERBATIM)

# Man pages from --help and --version of the programs themselves (help2man), so the manual
# says what the binary says. Without help2man there are no man pages (a warning).
find_program(HELP2MAN help2man)
set(man_outputs)
if(HELP2MAN)
  foreach(prog station station-sim)
    if(prog STREQUAL station)
      set(desc "hardware-in-the-loop test and production station")
    else()
      set(desc "serve the station's device models on real endpoints")
    endif()
    # help2man runs the program by path: a wrapper runs it through the emulator.
    file(GENERATE OUTPUT ${gen}/run-${prog}
      CONTENT "#!/bin/sh\nexec ${STATION_RUN_EMU_SH} \"$<TARGET_FILE:${prog}>\" \"$@\"\n"
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                       WORLD_READ WORLD_EXECUTE)
    set(extra_h2m)
    set(extra_dep)
    if(prog STREQUAL station)
      # Every command's own --help, as a COMMANDS section (drivers add commands).
      add_custom_command(OUTPUT ${gen}/station-commands.h2m
        COMMAND sh ${CMAKE_SOURCE_DIR}/packaging/commands-h2m.sh ${gen}/run-station
                > ${gen}/station-commands.h2m
        DEPENDS station ${gen}/run-station ${CMAKE_SOURCE_DIR}/packaging/commands-h2m.sh)
      set(extra_h2m --include=${gen}/station-commands.h2m)
      set(extra_dep ${gen}/station-commands.h2m)
    endif()
    add_custom_command(OUTPUT ${gen}/${prog}.1.gz
      COMMAND ${HELP2MAN} --no-info --no-discard-stderr --name=${desc}
              --include=${CMAKE_SOURCE_DIR}/packaging/${prog}.h2m ${extra_h2m}
              --version-string=${PROJECT_VERSION} --output=${gen}/${prog}.1 ${gen}/run-${prog}
      COMMAND sed -i "s/run-${prog}/${prog}/g; s/RUN-${prog}/${prog}/gI" ${gen}/${prog}.1
      COMMAND gzip -n -9 -f ${gen}/${prog}.1
      DEPENDS ${prog} ${gen}/run-${prog} ${CMAKE_SOURCE_DIR}/packaging/${prog}.h2m ${extra_dep}
      VERBATIM)
    list(APPEND man_outputs ${gen}/${prog}.1.gz)
  endforeach()
  install(FILES ${man_outputs} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(WARNING "help2man not found: no man pages (apt-get install help2man)")
endif()
add_custom_target(station_generated ALL DEPENDS ${gen}/demo-combined.bin ${man_outputs})
install(FILES ${gen}/demo-combined.bin DESTINATION ${STATION_SHARE}/jobs/generated)

# Debian's paths for these are under /usr/lib whatever the libdir is.
install(FILES fixtures/udev/60-station.rules DESTINATION lib/udev/rules.d)
install(FILES packaging/station@.service DESTINATION lib/systemd/system)
install(FILES packaging/station.sysusers DESTINATION lib/sysusers.d RENAME station.conf)
install(FILES packaging/station.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME station)
install(FILES packaging/station-sim.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME station-sim)
execute_process(COMMAND gzip -n -9 -c ${CMAKE_SOURCE_DIR}/packaging/changelog
                OUTPUT_FILE ${gen}/changelog.gz)
install(FILES packaging/copyright ${gen}/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- .deb (CPack) ------------------------------------------------------------------
# Dependencies are named, not computed by dpkg-shlibdeps, so the cross-built packages get
# them too: the runtime packages of the libraries we link, as the target release ships
# them (libgpiod2 = the 1.6 runtime of Debian 12; libgpiod3 = the 2.x runtime of Debian 13).
if(GPIOD_VERSION VERSION_GREATER_EQUAL 2.0)
  set(gpiod_dep "libgpiod3 (>= 2.0)")
else()
  set(gpiod_dep "libgpiod2 (>= 1.6)")
endif()
if(NOT STATION_DEB_ARCH)
  execute_process(COMMAND dpkg --print-architecture OUTPUT_VARIABLE STATION_DEB_ARCH
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME station)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Station developers <station@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "hardware-in-the-loop test and production station")
set(CPACK_PACKAGE_DESCRIPTION "Drives a jig's BOOT0/RESET lines with libgpiod, flashes STM32 units through the
ROM USB DFU bootloader and Katapult (CAN, USB-CDC), verifies by read-back and
writes one YAML report per unit. Includes station-sim (device models on real
endpoints), example fixtures and jobs, udev rules and a systemd unit for
production mode.")
set(CPACK_DEBIAN_PACKAGE_SECTION electronics)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${STATION_DEB_ARCH})
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libc6 (>= 2.34), ${gpiod_dep}, libusb-1.0-0 (>= 2:1.0.22), libsocketcan2 (>= 0.0.11), libyaml-0-2, libssl3 (>= 3.0.0), zlib1g (>= 1:1.2.0), libjson-c5 (>= 0.15), libuuid1 (>= 2.16), libpq5, libmosquitto1 (>= 1.6), libncurses6 (>= 6), libtinfo6 (>= 6), libevdev2 (>= 1.9)")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/postinst ${CMAKE_SOURCE_DIR}/packaging/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
include(CPack)
