#!/usr/bin/python3
"""An RTSP camera for tests: H.264 video and, by argument, AAC, G.711 A-law or no sound.

    rtsp_camera.py PORT aac|pcma|none

Serves rtsp://127.0.0.1:PORT/cam on 127.0.0.1 only and prints "ready" once listening.
Uses GStreamer's RTSP server library (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 "
    "! videoconvert ! video/x-raw,format=I420 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bframes=0 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1"
)
SOUND = {
    # 44.1 kHz stereo: unlike anything edgecam's own encoder makes, so a passed-through
    # track is told apart from a re-encoded one.
    "aac": "audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=44100,channels=2 "
    "! audioconvert ! voaacenc bitrate=96000 ! aacparse ! rtpmp4gpay name=pay1 pt=97",
    "pcma": "audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=8000,channels=1 "
    "! audioconvert ! alawenc ! rtppcmapay name=pay1 pt=8",
    "none": "",
}


def main():
    port, sound = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( %s %s )" % (VIDEO, SOUND[sound]))
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
