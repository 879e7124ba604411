"""A small ctypes binding to psyne's C core (csrc/psyne.h): open a named shared-memory channel
that Bun, C and Python processes share, and send or receive records in place.

The library is PSYNE_LIB if set, else prebuilds/<platform>/lib/libpsyne.so of this checkout.
Failures raise PsyneError (with psy_last_error()'s description); the outcomes "empty", "full" and
"timed out" are return values (None / False), not exceptions.

    with Channel("sensor_data") as ch:              # ipc://sensor_data on the Bun side
        idx = ch.claim(400, TYPE_FLOAT_VECTOR)      # None while the ring is full
        ch.payload(idx, 400).cast("f")[:] = array("f", values)
        ch.commit(idx)

Memoryviews from payload() point into the channel: use them only until commit() / release().
"""
import ctypes
import os
import platform
import sys

# enum psy_mode, psy_open_mode, psy_wait_kind (csrc/psyne.h); message types (csrc/layout.h)
SPSC, MPSC, SPMC, MPMC, BROADCAST = 0, 1, 2, 3, 4
CREATE_OR_ATTACH, CREATE, ATTACH = 0, 1, 2
WAIT_DATA, WAIT_SPACE = 0, 1
TYPE_FLOAT_VECTOR, TYPE_DOUBLE_VECTOR, TYPE_INT32_VECTOR, TYPE_BYTE_VECTOR, TYPE_TEXT, TYPE_JSON = 1, 2, 3, 4, 5, 6

E_EMPTY, E_FULL, E_TIMEOUT, E_INTERRUPTED = -1, -2, -15, -16
ERROR_NAMES = {
    -1: "EMPTY", -2: "FULL", -3: "TOO_LARGE", -4: "INVALID_NAME", -5: "EXISTS", -6: "NOT_FOUND",
    -7: "CONFIG", -8: "CORRUPT", -9: "ROLE", -10: "SYSTEM", -11: "STATE", -12: "INVALID_ARG",
    -13: "UNSUPPORTED", -14: "SLOTS", -15: "TIMEOUT", -16: "INTERRUPTED",
}


class PsyneError(Exception):
    """A negative PSY_E_* code from the C core; .code is the code, .name e.g. "NOT_FOUND"."""

    def __init__(self, code, function, message):
        self.code = code
        self.name = ERROR_NAMES.get(code, str(code))
        super().__init__(f"{function}: PSY_E_{self.name}: {message}")


class PolledRecord(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("length", ctypes.c_uint32),
                ("type", ctypes.c_uint32), ("span", ctypes.c_uint32)]


def _library_path():
    if os.environ.get("PSYNE_LIB"):
        return os.environ["PSYNE_LIB"]
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), platform.machine())
    system = "darwin" if sys.platform == "darwin" else "linux"
    name = "libpsyne.dylib" if system == "darwin" else "libpsyne.so"
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    return os.path.normpath(os.path.join(root, "prebuilds", f"{system}-{machine}", "lib", name))


lib = ctypes.CDLL(_library_path())
_ch = ctypes.c_void_p
_i32, _u32 = ctypes.c_int32, ctypes.c_uint32
for _name, _restype, _argtypes in [
    ("psy_open", _ch, [ctypes.c_char_p, _u32, _i32, _u32, _i32, ctypes.POINTER(_i32)]),
    ("psy_close", _i32, [_ch]),
    ("psy_claim", _i32, [_ch, _u32, _u32]),
    ("psy_commit", _i32, [_ch, _u32]),
    ("psy_abandon", _i32, [_ch, _u32]),
    ("psy_poll", _i32, [_ch]),
    ("psy_unpoll", _i32, [_ch]),
    ("psy_release", _i32, [_ch]),
    ("psy_polled", ctypes.POINTER(PolledRecord), [_ch]),
    ("psy_payload", ctypes.c_void_p, [_ch, _u32]),
    ("psy_capacity", _u32, [_ch]),
    ("psy_wait", _i32, [_ch, _i32, _u32, _i32]),
    ("psy_unlink", _i32, [ctypes.c_char_p]),
    ("psy_last_error", ctypes.c_char_p, []),
]:
    _fn = getattr(lib, _name)
    _fn.restype, _fn.argtypes = _restype, _argtypes


def _check(code, function):
    if code < 0:
        raise PsyneError(code, function, (lib.psy_last_error() or b"").decode("utf-8", "replace"))
    return code


def unlink(name):
    """Removes channel `name` (True), or False if it does not exist."""
    code = lib.psy_unlink(name.encode())
    if code == -6:
        return False
    _check(code, "psy_unlink")
    return True


class Channel:
    """One handle on channel `name` (the bare name: "sensor_data" for ipc://sensor_data)."""

    def __init__(self, name, capacity=4 << 20, mode=SPSC, permissions=0o600, open_mode=CREATE_OR_ATTACH):
        if name.startswith("ipc://"):
            name = name[len("ipc://"):]
        self.name = name
        err = _i32(0)
        self._h = lib.psy_open(name.encode(), capacity, mode, permissions, open_mode, ctypes.byref(err))
        if not self._h:
            _check(err.value or -10, f"psy_open({name!r})")

    def _handle(self):
        if not self._h:
            raise PsyneError(-11, "psyne", f"channel {self.name} is closed")
        return self._h

    # producer side
    def claim(self, length, type_id):
        """Reserves a record of `length` payload bytes: its index, or None while the ring is full."""
        code = lib.psy_claim(self._handle(), length, type_id)
        return None if code == E_FULL else _check(code, "psy_claim")

    def commit(self, index):
        _check(lib.psy_commit(self._handle(), index), "psy_commit")

    def abandon(self, index):
        _check(lib.psy_abandon(self._handle(), index), "psy_abandon")

    # consumer side
    def poll(self):
        """The next record's index (details in polled()), or None if nothing has arrived."""
        code = lib.psy_poll(self._handle())
        return None if code == E_EMPTY else _check(code, "psy_poll")

    def polled(self):
        """(index, length, type, span) of the record the last poll() returned, copied."""
        rec = lib.psy_polled(self._handle()).contents
        return PolledRecord(rec.index, rec.length, rec.type, rec.span)

    def release(self):
        _check(lib.psy_release(self._handle()), "psy_release")

    def unpoll(self):
        _check(lib.psy_unpoll(self._handle()), "psy_unpoll")

    def payload(self, index, length):
        """A writable memoryview (format "B") of exactly `length` bytes at record `index`'s payload:
        .cast("f") for float32, "d" for float64, "i" for int32. Valid until commit()/release()."""
        address = lib.psy_payload(self._handle(), index)
        return memoryview((ctypes.c_ubyte * length).from_address(address)).cast("B")

    def wait(self, kind, length=0, timeout_ms=1000):
        """Sleeps until data (WAIT_DATA) or `length` bytes of space (WAIT_SPACE) may be there: True,
        or False on timeout or a signal. True may be spurious: poll or claim again."""
        code = lib.psy_wait(self._handle(), kind, length, timeout_ms)
        if code in (E_TIMEOUT, E_INTERRUPTED):
            return False
        _check(code, "psy_wait")
        return True

    # copying conveniences
    def send(self, type_id, data, timeout_ms=30000):
        """Copies bytes-like `data` into a new record and publishes it, waiting for space if the
        ring is full; raises PsyneError(TIMEOUT) if none frees up within timeout_ms."""
        data = memoryview(data).cast("B")
        waited = 0
        while (index := self.claim(len(data), type_id)) is None:
            if not self.wait(WAIT_SPACE, len(data), 1000):
                waited += 1000
                if waited >= timeout_ms:
                    raise PsyneError(E_TIMEOUT, "send", f"no space for {len(data)} bytes in {timeout_ms} ms")
        self.payload(index, len(data))[:] = data
        self.commit(index)

    def receive(self):
        """(type, bytes) of the next message, copied and released; None if nothing has arrived."""
        index = self.poll()
        if index is None:
            return None
        rec = self.polled()
        data = bytes(self.payload(index, rec.length))
        self.release()
        return rec.type, data

    @property
    def capacity(self):
        return lib.psy_capacity(self._handle())

    def close(self):
        """Detaches (the last handle removes the segment once it holds no unread messages)."""
        if self._h:
            handle, self._h = self._h, None
            _check(lib.psy_close(handle), "psy_close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None):
            lib.psy_close(self._h)
            self._h = None
