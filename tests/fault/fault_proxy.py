"""A small asyncio TCP proxy for the gateway <-> service link.

One proxy sits between each gateway's --service_address and parley-service's
GatewayLink port, so the checker can break that link without touching either
process:
  * cut()    aborts every proxied connection (both sides see a reset; the
             gateway reconnects through the proxy);
  * stall()  stops forwarding in both directions (bytes wait in the kernel's
             buffers, nothing is lost) until resume().
retarget() points new connections at a restarted service's link address.
"""

import asyncio


class LinkProxy:
    """Forwards 127.0.0.1:<port> to `target` ("host:port"); see module doc."""

    def __init__(self, target):
        self.target = target
        self.address = None
        self._server = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers = set()  # Both sides of every live connection.

    async def start(self):
        """Listens on a free loopback port; returns "127.0.0.1:<port>"."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    def retarget(self, target):
        """New connections go to `target` from now on."""
        self.target = target

    def cut(self):
        """Resets every proxied connection."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def stall(self):
        """Stops forwarding (both directions) until resume()."""
        self._flowing.clear()

    def resume(self):
        """Forwards again after stall()."""
        self._flowing.set()

    async def close(self):
        """Stops listening and resets what is still connected."""
        self.resume()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()

    async def _serve(self, down_reader, down_writer):
        host, port = self.target.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host,
                                                                 int(port))
        except OSError:
            down_writer.transport.abort()
            return
        pair = (down_writer, up_writer)
        self._writers.update(pair)
        try:
            await asyncio.gather(self._pump(down_reader, up_writer),
                                 self._pump(up_reader, down_writer))
        finally:
            for writer in pair:
                writer.transport.abort()
                self._writers.discard(writer)

    async def _pump(self, reader, writer):
        """Copies reader to writer until either side ends; while stalled,
        holds the chunk it read (so no more is read: TCP pushes back)."""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
