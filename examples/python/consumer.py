"""The seed tutorial's IPC consumer in Python: receives COUNT FloatVectors from any producer (Bun, C
or Python) on the same channel, prints a running average every 100 and checks every value.
    python3 examples/python/consumer.py [name] [count] [capacity]
name: "sensor_data" or "ipc://sensor_data"; count default 1000; capacity default 4 MiB (peers
must agree on it: the Bun examples use 4 MiB).
Exits 1 if a message is wrong or nothing arrives for 30 s.
"""
import math
import sys
from array import array

import psyne

FLOATS = 100
IDLE_LIMIT_MS = 30000  # give up if no message arrives for this long


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "sensor_data"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    capacity = int(sys.argv[3]) if len(sys.argv) > 3 else 4 << 20
    cosines = [math.cos(j * 0.05) for j in range(FLOATS)]

    count = mismatches = idle = 0
    with psyne.Channel(name, capacity, psyne.SPSC) as ch:
        print("Consumer started, processing sensor data...", flush=True)
        while count < total:
            index = ch.poll()
            if index is None:
                if not ch.wait(psyne.WAIT_DATA, 0, 1000):
                    idle += 1000
                    if idle >= IDLE_LIMIT_MS:
                        print(f"consumer: nothing arrived for {idle} ms after {count} messages", file=sys.stderr)
                        break
                continue
            idle = 0
            rec = ch.polled()
            # exactly rec.length bytes, read in place; the record is ours until release()
            view = ch.payload(index, rec.length)
            values = view.cast("f").tolist() if rec.length % 4 == 0 else []
            view.release()
            s = math.sin(count * 0.1)
            expected = array("f", [s * c for c in cosines]).tolist()  # rounded to float32, as sent
            if rec.type != psyne.TYPE_FLOAT_VECTOR or values != expected:
                mismatches += 1
            if count % 100 == 0:
                avg = sum(values) / len(values) if values else 0.0
                print(f"Processed {count} messages, latest avg: {avg:.6g}", flush=True)
            count += 1
            ch.release()

    print("Consumer finished")
    verdict = "every value checked" if mismatches == 0 else f"{mismatches} messages wrong"
    print(f"received {count}/{total} in order, {verdict}", flush=True)
    return 0 if count == total and mismatches == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except psyne.PsyneError as e:
        sys.exit(f"consumer: {e}")
