# Cross-compiling for arm64 (Debian: gcc-aarch64-linux-gnu, the :arm64
# -dev packages of libuv, liburcu and check); the tests then run under
# qemu-user (qemu-aarch64). scripts/cross_aarch64.sh uses it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
# No -L sysroot: the arm64 libraries come from the multiarch paths
# (libc6:arm64), and the cross toolchain's own glibc copy must not mix
# with them (pthread_create hangs when it does).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
