"""The seed tutorial's IPC producer in Python: COUNT FloatVectors of 100 simulated sensor readings,
written in place in the channel, for any consumer (Bun, C or Python) on the same channel.
    python3 examples/python/producer.py [name] [count] [capacity]
name: "sensor_data" or "ipc://sensor_data"; count default 1000; capacity default 4 MiB (peers
must agree on it: the Bun examples use 4 MiB).
"""
import math
import sys
from array import array

import psyne

FLOATS = 100
STALL_LIMIT_MS = 30000  # give up if the consumer frees no space for this long


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "sensor_data"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    capacity = int(sys.argv[3]) if len(sys.argv) > 3 else 4 << 20
    length = FLOATS * 4
    cosines = [math.cos(j * 0.05) for j in range(FLOATS)]

    with psyne.Channel(name, capacity, psyne.SPSC) as ch:
        print("Producer started, sending sensor data...", flush=True)
        for i in range(count):
            waited = 0
            while (index := ch.claim(length, psyne.TYPE_FLOAT_VECTOR)) is None:
                if not ch.wait(psyne.WAIT_SPACE, length, 1000):
                    waited += 1000
                    if waited >= STALL_LIMIT_MS:
                        sys.exit(f"producer: no space for {waited} ms at message {i}; is a consumer running?")
            s = math.sin(i * 0.1)
            # array("f") rounds each double to float32; the copy goes straight into the channel
            ch.payload(index, length).cast("f")[:] = array("f", [s * c for c in cosines])
            ch.commit(index)
        print("Producer finished", flush=True)


if __name__ == "__main__":
    try:
        main()
    except psyne.PsyneError as e:
        sys.exit(f"producer: {e}")
