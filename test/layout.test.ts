// The layout is defined once, in csrc/layout.h; TypeScript reads it from the C core. These
// tests check the claims the layout makes (cache lines, alignment, fit) through that table.
import { describe, expect, test } from "bun:test";
import { layout, layoutHash, layoutNames, layoutTable } from "../src/core/layout.ts";

describe("the shared-memory layout", () => {
  test("TypeScript sees every constant the C core renders, and no others", () => {
    const header = require("node:fs").readFileSync(`${import.meta.dir}/../csrc/layout.h`, "utf8") as string;
    const listed = header
      .slice(header.indexOf("PSY_LAYOUT_CONSTANTS(X)"))
      .match(/X\((\w+)\)/g)!
      .map((x) => x.slice(2, -1));
    expect(Object.keys(layoutTable).sort()).toEqual([...new Set(listed)].sort());
    expect(layoutNames.toSorted() as string[]).toEqual([...new Set(listed)].sort()); // the names TypeScript knows (LayoutName)
  });

  test("an unknown constant is an error, not undefined", () => {
    expect(() => (layout as Record<string, number>).NO_SUCH_OFFSET).toThrow(/does not define/);
  });

  test("every cursor and event count has its own cache line", () => {
    const lines = (["OFF_TAIL", "OFF_CLAIM_TAIL", "OFF_HEAD", "OFF_CLAIM_HEAD", "OFF_DATA_SEQ", "OFF_SPACE_SEQ"] as const).map(
      (name) => Math.floor(layout[name] / layout.CACHE_LINE),
    );
    expect(new Set(lines).size).toBe(lines.length);
    expect(Math.floor(layout.OFF_CONSUMER_OWNER / layout.CACHE_LINE)).not.toBeOneOf(lines);
  });

  test("the participant table fits before the ring, and a subscriber cursor starts a line", () => {
    expect(layout.OFF_SLOTS + layout.MAX_SLOTS * layout.SLOT_SIZE).toBeLessThanOrEqual(layout.RING_OFFSET);
    expect((layout.OFF_SLOTS + layout.SLOT_READ_POS) % layout.CACHE_LINE).toBe(0);
    expect(layout.SLOT_SIZE % layout.CACHE_LINE).toBe(0);
  });

  test("payloads are 16-aligned so every typed array can view them in place", () => {
    expect(layout.RING_OFFSET % 4096).toBe(0);
    expect(layout.REC_HEADER % 16).toBe(0);
    expect(layout.REC_ALIGN).toBe(16);
  });

  test("the layout hash is stable for a given table", () => {
    expect(layoutHash).toBeGreaterThan(0);
    expect(layout.LAYOUT_VERSION).toBe(3);
  });
});
