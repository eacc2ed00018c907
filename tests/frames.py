# SPDX-License-Identifier: GPL-2.0-or-later
"""Be the guest behind taps: attach to them as QEMU does, send Ethernet frames into
one, see which taps the frames come out of. Run inside the sandbox's network
namespace (taps are looked up there):

    python3 frames.py cross SEND_TAP SRC_MAC SIZE[,SIZE...] RECV_TAP[,RECV_TAP...]
        one broadcast frame per L3 size; prints {size: [taps that got it]} as JSON
    python3 frames.py blast SEND_TAP SRC_MAC SECONDS WATCHED_TAP
        broadcast frames as fast as they go; prints the bits per second Open vSwitch
        handed to the watched tap meanwhile (sent to its guest, or dropped by its driver
        for want of a guest that reads: past the tap's qdisc either way)
    python3 frames.py udp SEND_TAP SRC_MAC SRC_IP RECV_TAP DST_MAC DST_IP PORT COUNT [NETNS]
        COUNT IPv4 UDP datagrams from one guest to another (its MAC and IP); prints how
        many of them the receiving guest got. With NETNS, the receiving tap is in that
        network namespace (another host's)
"""

import fcntl
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Dict, List

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
ETHERTYPE = 0x88B5  # IEEE local experimental: nothing else on the bridge uses it
MARK = b"qhook-frame"


def attach(name: str) -> int:
    """Open the tap as its guest would; the tap gets a carrier."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def frame(src_mac: str, size: int, sequence: int) -> bytes:
    """A broadcast frame carrying `size` bytes after its Ethernet header."""
    header = b"\xff" * 6 + bytes.fromhex(src_mac.replace(":", "")) + struct.pack("!H", ETHERTYPE)
    body = MARK + struct.pack("!II", size, sequence)
    return header + body + b"\x00" * (size - len(body))


def untagged(data: bytes) -> bytes:
    """The frame without an 802.1Q tag, if it has one."""
    return data[:12] + data[16:] if data[12:14] == b"\x81\x00" else data


def ours(data: bytes) -> bool:
    data = untagged(data)
    return len(data) > 14 + len(MARK) and data[12:14] == struct.pack("!H", ETHERTYPE)


def drain(fds: Dict[str, int], seconds: float) -> Dict[str, List[bytes]]:
    """Our frames that come out of each tap within the time."""
    got: Dict[str, List[bytes]] = {name: [] for name in fds}
    names = {fd: name for name, fd in fds.items()}
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        readable, _, _ = select.select(list(names), [], [], left)
        for fd in readable:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if ours(data):
                    got[names[fd]].append(untagged(data))


def cross(send: str, src_mac: str, sizes: List[int], receivers: List[str]) -> Dict[int, List]:
    sender = attach(send)
    fds = {name: attach(name) for name in receivers}
    time.sleep(0.5)  # Open vSwitch sees the carriers come up
    drain(fds, 0.2)
    seen: Dict[int, List[str]] = {}
    for sequence, size in enumerate(sizes):
        os.write(sender, frame(src_mac, size, sequence))
        got = drain(fds, 1.0)
        seen[size] = sorted(
            name
            for name, frames in got.items()
            if any(
                struct.unpack("!II", f[14 + len(MARK) : 22 + len(MARK)])[1] == sequence
                for f in frames
            )
        )
    return seen


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def datagram(
    src_mac: str, src_ip: str, dst_mac: str, dst_ip: str, port: int, sequence: int
) -> bytes:
    """An Ethernet frame with an IPv4 UDP datagram carrying MARK and its sequence number
    (UDP checksum 0: none, as IPv4 allows; the IP header's is right, or conntrack would
    call the packet invalid)."""
    payload = MARK + struct.pack("!I", sequence)
    udp = struct.pack("!HHHH", 40000 + sequence % 1000, port, 8 + len(payload), 0) + payload
    addresses = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), sequence & 0xFFFF, 0, 64, 17, 0)
    header = header[:10] + struct.pack("!H", _checksum(header + addresses)) + addresses
    ethernet = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return ethernet + b"\x08\x00" + header + udp


def _udp_sequence(data: bytes, port: int) -> int:
    """The sequence number of one of our datagrams to this port, or -1."""
    data = untagged(data)
    if len(data) < 42 or data[12:14] != b"\x08\x00" or data[23] != 17:
        return -1
    start = 14 + (data[14] & 0x0F) * 4
    if struct.unpack("!H", data[start + 2 : start + 4])[0] != port:
        return -1
    body = data[start + 8 :]
    if not body.startswith(MARK) or len(body) < len(MARK) + 4:
        return -1
    return struct.unpack("!I", body[len(MARK) : len(MARK) + 4])[0]


def udp(
    send: str,
    src_mac: str,
    src_ip: str,
    receive: str,
    dst_mac: str,
    dst_ip: str,
    port: int,
    count: int,
    receiver_netns: str = "",
) -> int:
    sender = attach(send)
    if receiver_netns:
        enter_netns(receiver_netns)
    receiver = attach(receive)
    time.sleep(0.5)  # Open vSwitch sees the carriers come up
    _read_all(receiver, 0.2)
    for sequence in range(count):
        os.write(sender, datagram(src_mac, src_ip, dst_mac, dst_ip, port, sequence))
        time.sleep(0.02)
    got = {_udp_sequence(data, port) for data in _read_all(receiver, 1.0)}
    return len(got & set(range(count)))


def enter_netns(name: str) -> None:
    """Move this process into a named network namespace (taps already attached stay)."""
    import ctypes

    clone_newnet = 0x40000000
    with open(f"/run/netns/{name}") as namespace:
        if ctypes.CDLL(None, use_errno=True).setns(namespace.fileno(), clone_newnet) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")


def _read_all(fd: int, seconds: float) -> List[bytes]:
    frames: List[bytes] = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return frames
        if select.select([fd], [], [], left)[0]:
            while True:
                try:
                    frames.append(os.read(fd, 65536))
                except BlockingIOError:
                    break


def _handed(tap: str) -> int:
    base = f"/sys/class/net/{tap}/statistics"
    return sum(int(open(f"{base}/{name}").read()) for name in ("tx_packets", "tx_dropped"))


def blast(send: str, src_mac: str, seconds: float, watched: str, size: int = 1400) -> float:
    """Frames into one tap as fast as it takes them; bits per second out of another."""
    sender = attach(send)
    time.sleep(0.5)
    payload = frame(src_mac, size, 0)
    before, began = _handed(watched), time.monotonic()
    while time.monotonic() < began + seconds:
        select.select([], [sender], [], 0.1)
        for _ in range(16):
            try:
                os.write(sender, payload)
            except (BlockingIOError, OSError):
                break
    elapsed = time.monotonic() - began
    return (_handed(watched) - before) * len(payload) * 8 / elapsed


def main(argv: List[str]) -> int:
    if argv[0] == "cross":
        sizes = [int(s) for s in argv[3].split(",")]
        print(json.dumps(cross(argv[1], argv[2], sizes, argv[4].split(","))))
    elif argv[0] == "blast":
        print(json.dumps(blast(argv[1], argv[2], float(argv[3]), argv[4])))
    elif argv[0] == "udp":
        print(json.dumps(udp(*argv[1:7], int(argv[7]), int(argv[8]), *argv[9:10])))
    else:
        raise SystemExit(f"unknown command {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
