// Builds csrc/ into one shared object: zig build -Doptimize=ReleaseFast [-Dtarget=x86_64-linux-gnu.2.17]
// Always pass an optimize mode: Debug compiles C with UBSan traps.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const lib = b.addSharedLibrary(.{
        .name = "psyne",
        .target = target,
        .optimize = optimize,
    });
    lib.addCSourceFiles(&.{ "csrc/segment.c", "csrc/participants.c", "csrc/ring.c", "csrc/wait.c" }, &.{
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fvisibility=hidden", // only PSY_API functions are exported
    });
    lib.linker_allow_shlib_undefined = false; // a missing function fails the build, not dlopen
    lib.linkLibC();
    if (target.isLinux()) lib.linkSystemLibrary("pthread"); // a separate library before glibc 2.34
    b.installArtifact(lib);
}
