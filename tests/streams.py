"""Real streams on the loopback, for the tests and benchmarks: servers that send the
demo's barcoded frames, each a subprocess of the caller on a free port of 127.0.0.1,
bounded in time, stopped by its pid, and killable and restartable mid-run.

    with stream_server("udp") as server:         # or "http", "tcp", "mjpeg", ...
        cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
        ok, frame = cap.read()
        k = read_frame_number(frame)              # which frame of the stream it is
        age = time.monotonic() - server.sent_at(k)
        server.kill()                             # SIGKILL, as a crash
        server.restart()                          # the same port, the stream goes on

A stream is live, like a camera: frame k is due at `t0 + k / fps` (t0 is the
server's first start, on CLOCK_MONOTONIC, which every process of the machine
shares), whoever watches and whenever the server was (re)started. A server that
starts late, or is held up (one waiting for its client), goes on from the frame due
then; after `frames` frames the stream ends. So `sent_at(k)` is when frame k was
sent, give or take the encoder's frame, and a restarted server carries on from
where the stream is by then, as a camera does.

Kinds (KINDS):

    udp     ffmpeg pushes MPEG-TS (H.264) to udp://127.0.0.1:PORT; the client binds
            PORT. Joining mid-way: the encoder repeats its headers on every
            keyframe (repeat-headers=1) and GOPs are short (GOP frames).
    http    ffmpeg serves MPEG-TS (H.264) at http://127.0.0.1:PORT/x.ts (-listen 1):
            one client, then it ends.
    tcp     ffmpeg serves MPEG-TS (H.264) at tcp://127.0.0.1:PORT (?listen=1 on its
            side): exactly one client, then it ends.
    rtsp    rtsp://127.0.0.1:PORT/x: ffmpeg sends H.264 in RTP to a local port, and
            a small RTSP server in Python (OPTIONS, DESCRIBE, SETUP, PLAY,
            TEARDOWN) forwards the packets to each client that plays, over its
            RTSP connection (interleaved, what rtsp_transport=tcp asks for) or
            over UDP to the client's ports; any number of clients.
    mjpeg   Python: multipart/x-mixed-replace JPEG frames at http://127.0.0.1:PORT/
            (what most IP cameras speak), any number of clients, each from the
            frame due when it connects. `stall_after=N`: after N frames to a client,
            send nothing more and keep the connection open; `end_after=N`: close it.
    silent  Python: accepts connections and never sends a byte. `scheme` names the
            URL it is given as (tcp, http, rtsp, ...): what a client sees of a
            server that hangs.

RTSP: the static ffmpeg of imageio-ffmpeg cannot serve it to a player (its rtsp
muxer only pushes to a server: `-f rtsp -rtsp_flags listen` tries to connect and is
refused; `-rtsp_flags listen` is an option of the demuxer, for receiving a push),
hence the relay above.

The ffmpeg kinds are two processes, both children of the caller: the feeder
(`python streams.py feed ...`, drawing the demo's frames and writing them, raw, to
the pipe at their due times) and ffmpeg (encoding what comes down the pipe and
sending it). Both die with the process that started them (PR_SET_PDEATHSIG), and
the feeder ends at the end of the stream and at its own deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FPS = 30.0
SIZE = (320, 240)  # width, height: small, so that 2 cores keep up with everything
GOP = 15  # frames between keyframes: a client joining mid-way waits at most 0.5 s
JPEG_QUALITY = 80
KINDS = ("udp", "http", "tcp", "rtsp", "mjpeg", "silent")
FFMPEG_KINDS = ("udp", "http", "tcp", "rtsp")
# The most a server may live, whatever the caller does: the feeder and the Python
# servers end on their own after this (ffmpeg when its input ends or its parent dies).
MAX_LIFETIME_S = 120.0
STOP_WAIT_S = 5.0

HERE = os.path.abspath(__file__)

# x264 for a stream joined mid-way, with the least delay: headers repeated with every
# keyframe, short GOPs, no lookahead or B-frames (zerolatency).
X264 = (
    "-c:v libx264 -preset ultrafast -tune zerolatency "
    f"-g {GOP} -keyint_min {GOP} -x264-params repeat-headers=1 -pix_fmt yuv420p"
).split()


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 that nothing listens on now (TCP, or UDP for SOCK_DGRAM).
    Another process could take it before the server binds it: rare, and the server
    then fails at once, which the caller sees."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def ffmpeg_command(kind: str, port: int, size: tuple[int, int] = SIZE, fps: float = FPS) -> list:
    """The ffmpeg command line of an ffmpeg kind: raw BGR frames on stdin, the stream
    out on 127.0.0.1:port (for rtsp: the relay's RTP port)."""
    width, height = size
    raw_in = ["-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}"]
    raw_in += ["-framerate", f"{fps:g}", "-i", "pipe:0"]
    if kind == "udp":
        # 7 TS packets a datagram: under the loopback's and any Ethernet's MTU
        out = ["-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    elif kind == "http":
        out = ["-listen", "1", "-f", "mpegts", f"http://127.0.0.1:{port}/x.ts"]
    elif kind == "tcp":
        out = ["-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"]
    elif kind == "rtsp":  # RTP to the relay, on `port`; its RTCP too (rtcpport)
        out = ["-f", "rtp", "-payload_type", "96", "-rtpflags", "send_bye"]
        out += [f"rtp://127.0.0.1:{port}?pkt_size=1200&rtcpport={port}"]
    else:
        raise ValueError(f"not an ffmpeg kind: {kind!r}")
    head = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    return head + raw_in + X264 + out


class StreamServer:
    """A server of the demo's frames on 127.0.0.1 (see the module's docstring)."""

    def __init__(
        self,
        kind: str,
        *,
        fps: float = FPS,
        size: tuple[int, int] = SIZE,
        frames: int = 10_000,
        lifetime_s: float = MAX_LIFETIME_S,
        stall_after: int | None = None,
        end_after: int | None = None,
        scheme: str = "tcp",
        port: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown stream kind {kind!r}; known: {', '.join(KINDS)}")
        self.kind, self.fps, self.size, self.frames = kind, fps, size, frames
        self.lifetime_s = lifetime_s
        self.stall_after, self.end_after, self.scheme = stall_after, end_after, scheme
        udp = kind == "udp"
        self.port = port or free_port(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        # rtsp: where ffmpeg sends RTP for the relay
        self.rtp_port = free_port(socket.SOCK_DGRAM) if kind == "rtsp" else None
        self.t0: float | None = None  # when frame 0 is due (CLOCK_MONOTONIC)
        self.procs: list[subprocess.Popen] = []
        self.starts = 0  # how many times the server was started

    @property
    def url(self) -> str:
        """What a client opens."""
        p = self.port
        return {
            "udp": f"udp://127.0.0.1:{p}",
            "http": f"http://127.0.0.1:{p}/x.ts",
            "tcp": f"tcp://127.0.0.1:{p}",
            "rtsp": f"rtsp://127.0.0.1:{p}/x",
            "mjpeg": f"http://127.0.0.1:{p}/video.mjpg",
            "silent": f"{self.scheme}://127.0.0.1:{p}/x",
        }[self.kind]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def sent_at(self, k: int) -> float:
        """When frame k of the stream was (or is) due to be sent, CLOCK_MONOTONIC."""
        assert self.t0 is not None, "not started"
        return self.t0 + k / self.fps

    def due_frame(self, at: float | None = None) -> int:
        """The frame of the stream due at `at` (now by default)."""
        assert self.t0 is not None, "not started"
        now = time.monotonic() if at is None else at
        return max(0, math.floor((now - self.t0) * self.fps))

    def start(self) -> StreamServer:
        """Start the server. The first start makes frame 0 due when the server is
        ready; a later one goes on with the stream. Returns once the port is bound,
        so that a client can connect at once."""
        if self.alive:
            raise RuntimeError(f"{self.kind} server on port {self.port} runs already")
        self._reap()
        self.starts += 1
        common = [
            f"--fps={self.fps}",
            f"--size={self.size[0]}x{self.size[1]}",
            *([] if self.t0 is None else [f"--t0={self.t0!r}"]),
            f"--frames={self.frames}",
            f"--lifetime={self.lifetime_s}",
        ]
        # Own session: a Ctrl-C meant for a player under test does not reach it.
        kw: dict = dict(start_new_session=True, preexec_fn=_die_with_parent)
        if self.kind == "rtsp":  # the relay first: ffmpeg's packets go to its port
            relay = subprocess.Popen(
                [sys.executable, HERE, "rtsp", f"--port={self.port}", f"--rtp-port={self.rtp_port}"]
                + common,
                stdout=subprocess.PIPE,
                **kw,
            )
            self.procs.append(relay)
            self._ready(relay.stdout, t0=False)
        if self.kind in FFMPEG_KINDS:
            live = self.kind in ("udp", "rtsp")  # sending, whether anyone listens or not
            wait = [] if live else [f"--wait-client={self.port}"]
            feeder = subprocess.Popen(
                [sys.executable, HERE, "feed", *common, *wait],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **kw,
            )
            self.procs.append(feeder)
            self._ready(feeder.stderr)
            ffmpeg = subprocess.Popen(
                ffmpeg_command(self.kind, self.rtp_port or self.port, self.size, self.fps),
                stdin=feeder.stdout,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **kw,
            )
            feeder.stdout.close()  # ffmpeg's now; the feeder sees EPIPE when it dies
            self.procs.append(ffmpeg)
            if not live:
                self._wait_listening()
            return self
        role = "mjpeg" if self.kind == "mjpeg" else "silent"
        extra = []
        if self.stall_after is not None:
            extra.append(f"--stall-after={self.stall_after}")
        if self.end_after is not None:
            extra.append(f"--end-after={self.end_after}")
        proc = subprocess.Popen(
            [sys.executable, HERE, role, f"--port={self.port}", *common, *extra],
            stdout=subprocess.PIPE,
            **kw,
        )
        self.procs.append(proc)
        self._ready(proc.stdout)
        return self

    def _ready(self, pipe, t0: bool = True) -> None:
        """Wait for the "ready T0" line of a server process (the mjpeg, silent and
        rtsp servers say it once they listen, the feeder before its first frame);
        on a first start, T0 is the stream's (unless t0 is False: not the stream's
        clock)."""
        line = _readline(pipe, 20.0).split()
        if len(line) != 2 or line[0] != b"ready":
            self.stop()
            raise RuntimeError(f"{self.kind} server on port {self.port} did not start: {line}")
        if self.t0 is None and t0:
            self.t0 = float(line[1])

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """Until ffmpeg listens on the port (it binds it before it reads a frame).
        Looked up in /proc/net/tcp, not by connecting: a server that takes one client
        would take the probe for it."""
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if any(p.poll() is not None for p in self.procs):
                codes = [p.poll() for p in self.procs]
                self.stop()
                raise RuntimeError(f"{self.kind} server on port {self.port} exited: {codes}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} server on port {self.port}: not listening")
            time.sleep(0.005)

    def kill(self) -> None:
        """SIGKILL the server's processes (a crash) and reap them."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL what is left after STOP_WAIT_S; reaped."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        self._reap()

    def restart(self) -> StreamServer:
        """Kill what is left of the server and start it again on the same port; the
        stream goes on from the frame due now."""
        self.kill()
        return self.start()

    def _reap(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.wait(STOP_WAIT_S)
            for pipe in (p.stdout, p.stderr):
                if pipe:
                    pipe.close()
        self.procs = []

    def __enter__(self) -> StreamServer:
        if not self.procs:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def stream_server(kind: str, **kw) -> Iterator[StreamServer]:
    """A started StreamServer, stopped on the way out."""
    server = StreamServer(kind, **kw).start()
    try:
        yield server
    finally:
        server.stop()


def _readline(stream, timeout: float) -> bytes:
    """A line from a child's pipe, or b"" after `timeout` seconds."""
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return got[0] if got else b""


def _tcp_states(port: int) -> set[str]:
    """The states of the TCP sockets of 127.0.0.1:port (or any address:port), as
    /proc/net/tcp gives them: "0A" listening, "01" established."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/tcp") as f:
        return {fields[3] for line in f.readlines()[1:] if (fields := line.split())[1] in want}


def _listening(port: int) -> bool:
    return "0A" in _tcp_states(port)


def _connected(port: int) -> bool:
    """Whether a client is connected to the server on `port`."""
    return "01" in _tcp_states(port)


# --- the server processes -----------------------------------------------------


def _announce(args: argparse.Namespace, out) -> None:
    """Say "ready T0" on `out`; T0 is now on a first start (no --t0)."""
    if args.t0 is None:
        args.t0 = time.monotonic()
    out.write(f"ready {args.t0!r}\n")
    out.flush()


def _frames(args: argparse.Namespace) -> Iterator[tuple[int, object]]:
    """(k, image) of the stream, each at its due time t0 + k / fps, starting from
    the frame due now; a frame whose time has passed (the consumer held us up) is
    skipped: the stream is live."""
    import numpy as np

    from engine.sources import DemoSource

    width, height = args.size
    demo = DemoSource(frames=args.frames, size=(width, height), fps=args.fps)
    image = np.empty((height, width, 3), np.uint8)
    if args.t0 is None:
        _announce(args, sys.stderr)  # the feeder: its stdout is the video
    k = max(0, math.floor((time.monotonic() - args.t0) * args.fps))
    while k < args.frames:
        demo.seek(k)
        demo.read_into(image)
        delay = args.t0 + k / args.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield k, image
        k = max(k + 1, math.floor((time.monotonic() - args.t0) * args.fps))


def _feed(args: argparse.Namespace) -> None:
    """Raw BGR frames on stdout, for ffmpeg. For a server waiting for its client
    (`--wait-client PORT`): the first frame, then those due from when the client
    connects (ffmpeg reads its input while it waits, and would queue every frame
    since its start for the client)."""
    out = sys.stdout.buffer
    if args.t0 is not None:
        _announce(args, sys.stderr)
    try:
        for n, (_, image) in enumerate(_frames(args)):
            out.write(image.data)
            out.flush()
            if n == 0 and args.wait_client:
                # ffmpeg listens once its encoder has a frame; the frames that come
                # after this one are those due when the client is there
                while not _connected(args.wait_client):
                    time.sleep(0.005)
    except BrokenPipeError:  # ffmpeg is gone (killed, or its one client left)
        os._exit(0)


class _MjpegHandler(BaseHTTPRequestHandler):
    args: argparse.Namespace
    protocol_version = "HTTP/1.0"

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        import cv2

        args = self.args
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        sent = 0
        try:
            for _, image in _frames(args):
                if args.stall_after is not None and sent >= args.stall_after:
                    self.wfile.flush()
                    time.sleep(args.lifetime)  # keep the connection, say nothing
                    return
                if args.end_after is not None and sent >= args.end_after:
                    return
                ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                data = jpeg.tobytes()
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                    + b"\r\n"
                )
                self.wfile.flush()
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left


def _mjpeg(args: argparse.Namespace) -> None:
    _MjpegHandler.args = args
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _MjpegHandler)
    server.daemon_threads = True
    import cv2  # noqa: F401  (here, not in the first client's time)

    import engine.sources  # noqa: F401

    _announce(args, sys.stdout)
    server.serve_forever()


def _silent(args: argparse.Namespace) -> None:
    """Accept every connection, read and drop what comes, send nothing."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(16)
    _announce(args, sys.stdout)
    held = []
    while True:
        conn, _ = listener.accept()
        held.append(conn)  # kept open, never answered


# The SDP of the stream ffmpeg sends: H.264, RTP payload type 96; its parameter
# sets come in the stream, with every keyframe (repeat-headers=1).
SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=frame-engine test stream\r\n"
    "c=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"
)


class _RtspClient:
    """One RTSP connection: answers its requests; once it plays, `send` forwards
    a packet to it (channel 0 RTP, 1 RTCP)."""

    def __init__(self, conn: socket.socket, args: argparse.Namespace, playing: dict) -> None:
        self.conn, self.args, self.playing = conn, args, playing
        self.session = f"{id(self) & 0xFFFFFFFF:08X}"
        self.write_lock = threading.Lock()
        self.udp: tuple[socket.socket, str, int] | None = None  # socket, host, RTP port
        # a client that stops reading is dropped, not waited for
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 2, 0))

    def send(self, packet: bytes) -> None:
        rtcp = 200 <= packet[1] <= 204
        if self.udp:
            sock, host, port = self.udp
            sock.sendto(packet, (host, port + rtcp))
            return
        head = b"$" + bytes([int(rtcp)]) + len(packet).to_bytes(2, "big")
        with self.write_lock:
            self.conn.sendall(head + packet)

    def reply(self, cseq: str, status: str = "200 OK", headers=(), body: str = "") -> None:
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", *headers]
        if body:
            lines.append(f"Content-Length: {len(body.encode())}")
        data = ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
        with self.write_lock:
            self.conn.sendall(data)

    def serve(self) -> None:
        stream = self.conn.makefile("rb")
        try:
            while request := self._request(stream):
                method, url, headers = request
                cseq = headers.get("cseq", "0")
                session = [f"Session: {self.session};timeout=60"]
                if method == "OPTIONS":
                    public = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
                    self.reply(cseq, headers=[f"Public: {public}"])
                elif method == "DESCRIBE":
                    base = url if url.endswith("/") else url + "/"
                    content = ["Content-Type: application/sdp", f"Content-Base: {base}"]
                    self.reply(cseq, headers=content, body=SDP)
                elif method == "SETUP":
                    self.reply(cseq, headers=[*session, self._transport(headers)])
                elif method == "PLAY":
                    self.reply(cseq, headers=[*session, "Range: npt=0.000-"])
                    self.playing[id(self)] = self
                elif method in ("GET_PARAMETER", "SET_PARAMETER"):
                    self.reply(cseq, headers=session)
                elif method == "TEARDOWN":
                    self.reply(cseq, headers=session)
                    return
                else:
                    self.reply(cseq, "501 Not Implemented")
        except OSError:
            pass  # the client left
        finally:
            self.playing.pop(id(self), None)
            self.conn.close()

    def _transport(self, headers: dict) -> str:
        transport = headers.get("transport", "")
        if "TCP" in transport.upper() or "interleaved" in transport:
            self.udp = None
            return "Transport: RTP/AVP/TCP;unicast;interleaved=0-1"
        ports = [p for p in transport.split(";") if p.startswith("client_port=")]
        rtp = int(ports[0].split("=")[1].split("-")[0]) if ports else 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host = self.conn.getpeername()[0]
        self.udp = (sock, host, rtp)
        server_port = self.args.rtp_port
        return (
            f"Transport: RTP/AVP;unicast;client_port={rtp}-{rtp + 1};"
            f"server_port={server_port}-{server_port + 1}"
        )

    @staticmethod
    def _request(stream) -> tuple[str, str, dict] | None:
        """The next request (method, url, headers); interleaved packets the client
        sends on the connection (its RTCP reports) are read and dropped. None at
        the end of the connection."""
        while True:
            first = stream.read(1)
            if not first:
                return None
            if first == b"$":
                head = stream.read(3)
                if len(head) < 3:
                    return None
                stream.read(int.from_bytes(head[1:3], "big"))
                continue
            line = (first + stream.readline()).decode("latin-1").strip()
            if line:
                break
        headers = {}
        while (h := stream.readline().decode("latin-1").strip()) != "":
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        if n := int(headers.get("content-length", "0")):
            stream.read(n)
        method, url, *_ = line.split() + ["", ""]
        return method, url, headers


def _rtcp_bye(packet: bytes) -> bool:
    """Whether an RTCP (compound) packet holds a BYE."""
    at = 0
    while at + 4 <= len(packet) and 200 <= packet[at + 1] <= 204:
        if packet[at + 1] == 203:
            return True
        at += 4 * (int.from_bytes(packet[at + 2 : at + 4], "big") + 1)
    return False


def _rtsp(args: argparse.Namespace) -> None:
    """An RTSP server of one stream: the RTP packets ffmpeg sends to --rtp-port go
    to every client that plays."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", args.rtp_port))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(16)
    playing: dict[int, _RtspClient] = {}

    def forward() -> None:
        while True:
            packet = rtp.recv(65536)
            for client in list(playing.values()):
                try:
                    client.send(packet)
                except OSError:  # gone, or not reading: dropped
                    playing.pop(id(client), None)
                    with contextlib.suppress(OSError):
                        client.conn.shutdown(socket.SHUT_RDWR)
            if _rtcp_bye(packet):  # ffmpeg's stream ended (send_bye): so does ours
                for client in list(playing.values()):
                    with contextlib.suppress(OSError):
                        client.conn.shutdown(socket.SHUT_RDWR)
                os._exit(0)

    threading.Thread(target=forward, daemon=True).start()
    _announce(args, sys.stdout)
    while True:
        conn, _ = listener.accept()
        client = _RtspClient(conn, args, playing)
        threading.Thread(target=client.serve, daemon=True).start()


def _size(text: str) -> tuple[int, int]:
    w, h = text.split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a stream server process (tests/streams.py)")
    parser.add_argument("role", choices=("feed", "mjpeg", "silent", "rtsp"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--rtp-port", type=int, help="rtsp: where ffmpeg sends RTP")
    parser.add_argument("--fps", type=float, default=FPS)
    parser.add_argument("--size", type=_size, default=SIZE)
    parser.add_argument("--t0", type=float, help="when frame 0 is due; default: at the start")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--lifetime", type=float, default=MAX_LIFETIME_S)
    parser.add_argument("--stall-after", type=int)
    parser.add_argument("--end-after", type=int)
    parser.add_argument("--wait-client", type=int, help="feed: once a client is on this port")
    args = parser.parse_args(argv)
    # the deadline: SIGALRM's default action ends the process, wherever it is
    signal.alarm(max(1, math.ceil(args.lifetime)))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    {"feed": _feed, "mjpeg": _mjpeg, "silent": _silent, "rtsp": _rtsp}[args.role](args)


if __name__ == "__main__":
    main()
