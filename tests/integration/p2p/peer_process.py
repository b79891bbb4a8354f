"""A PeerNetwork in its own process, for tests that pause or kill a peer.

Run as a script (not collected by pytest), from the repository root and with
it on ``PYTHONPATH`` (it imports ``tests.signing``):

    python peer_process.py KEY_BYTE CHAIN GENESIS_HEX HEARTBEAT PEER_ID_HEX PEER_ADDRESS

It prints ``READY <port>`` once listening, echoes requests, and stops cleanly
on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from p2p import P2PLimits, PeerNetwork
from tests.signing import NaclSigner, NaclVerifier


class Echo:
    def on_frame(self, peer_id: bytes, kind: int, payload: bytes) -> None:
        pass

    async def on_request(self, peer_id: bytes, kind: int, payload: bytes) -> bytes:
        return b"echo:" + payload

    def on_peer_connected(self, peer_id: bytes) -> None:
        pass

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        pass


async def main(key_byte: int, chain: str, genesis: bytes, heartbeat: float, peer_id: bytes, address: str) -> None:
    limits = P2PLimits(
        heartbeat_interval=heartbeat,
        handshake_timeout=1.0,
        connect_timeout=1.0,
        reconnect_base=0.05,
        reconnect_cap=0.4,
        close_timeout=0.5,
    )
    net = PeerNetwork(
        signer=NaclSigner.from_byte(key_byte),
        verifier=NaclVerifier(),
        chain_id=chain,
        genesis_hash=genesis,
        host="127.0.0.1",
        port=0,
        handler=Echo(),
        peers={peer_id: address},
        limits=limits,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    port = await net.start()
    print(f"READY {port}", flush=True)
    await stop.wait()
    await net.stop()


if __name__ == "__main__":
    key, chain, genesis, heartbeat, peer, address = sys.argv[1:7]
    asyncio.run(main(int(key), chain, bytes.fromhex(genesis), float(heartbeat), bytes.fromhex(peer), address))
