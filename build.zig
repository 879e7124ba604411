// Builds csrc/ into one shared object: zig build -Doptimize=ReleaseFast [-Dtarget=x86_64-linux-gnu.2.17]
// Always pass an optimize mode: Debug compiles C with UBSan traps.
// -Dtest-hooks=true builds the test library: the same core with its kill and stall points and the
// test-only options compiled in (csrc/hooks.c); never shipped (scripts/build-native.mjs --test-hooks).
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const test_hooks = b.option(bool, "test-hooks", "compile in the test hooks (never for a shipped library)") orelse false;
    const lib = b.addSharedLibrary(.{
        .name = "psyne",
        .target = target,
        .optimize = optimize,
    });
    const sources = &.{ "csrc/segment.c", "csrc/participants.c", "csrc/events.c", "csrc/ring.c", "csrc/recovery.c", "csrc/wait.c", "csrc/hooks.c" };
    const flags = [_][]const u8{
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fvisibility=hidden", // only PSY_API functions are exported
    };
    if (test_hooks) {
        lib.addCSourceFiles(sources, &(flags ++ [_][]const u8{"-DPSY_TEST_HOOKS"}));
    } else {
        lib.addCSourceFiles(sources, &flags);
    }
    lib.linker_allow_shlib_undefined = false; // a missing function fails the build, not dlopen
    lib.linkLibC();
    if (target.isLinux()) lib.linkSystemLibrary("pthread"); // a separate library before glibc 2.34
    b.installArtifact(lib);
}
