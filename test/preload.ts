// Bun 1.4 ignores bunfig's [test] timeout; multi-process tests need more than the 5 s default.
import { setDefaultTimeout } from "bun:test";
setDefaultTimeout(60_000);
