// Native libraries imported with `{ type: "file" }` (src/native-libs.ts) are their file paths.
declare module "*.so" {
  const path: string;
  export default path;
}
declare module "*.dylib" {
  const path: string;
  export default path;
}
