#!/usr/bin/env python3
"""An independent ONVIF client for tests: finds the camera by WS-Discovery (a Probe sent
to a loopback port, as NVRs send it to 239.255.255.250:3702) and talks to it with
onvif-zeep (zeep, the WSDLs of onvif.org, WS-Security UsernameToken digest).

    onvif_client.py DISCOVERY_PORT USER PASSWORD

Prints one JSON object: what it found, or the error of each step.
"""
import json
import os
import re
import socket
import sys
import uuid

PROBE = """<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action><a:MessageID>urn:uuid:{id}</a:MessageID><a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>onvif://www.onvif.org/Profile/Streaming</d:Scopes></d:Probe></s:Body></s:Envelope>"""


def discover(port):
    message_id = str(uuid.uuid4())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    sock.sendto(PROBE.format(id=message_id).encode(), ("127.0.0.1", port))
    data, _ = sock.recvfrom(65536)
    text = data.decode()
    relates = re.search(r"RelatesTo>([^<]+)<", text)
    xaddrs = re.search(r"XAddrs>([^<]+)<", text)
    return {
        "relates_ok": bool(relates) and relates.group(1) == "urn:uuid:" + message_id,
        "xaddrs": xaddrs.group(1).split() if xaddrs else [],
        "probe_matches": "ProbeMatches" in text,
    }


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    out = {}
    try:
        out["discovery"] = discover(port)
    except Exception as e:  # noqa: BLE001 - the test reads what went wrong
        out["discovery_error"] = repr(e)
        print(json.dumps(out))
        return
    from onvif import ONVIFCamera
    import onvif

    wsdl = os.path.join(os.path.dirname(os.path.dirname(onvif.__file__)), "wsdl")
    xaddr = out["discovery"]["xaddrs"][0]
    m = re.match(r"https?://([^/:]+):(\d+)/", xaddr)
    host, http_port = m.group(1), int(m.group(2))
    try:
        cam = ONVIFCamera(host, http_port, user, password, wsdl, no_cache=True)
        info = cam.devicemgmt.GetDeviceInformation()
        out["manufacturer"] = info.Manufacturer
        out["model"] = info.Model
        media = cam.create_media_service()
        profiles = media.GetProfiles()
        token = profiles[0].token
        out["profile"] = {
            "token": token,
            "encoding": profiles[0].VideoEncoderConfiguration.Encoding,
            "width": profiles[0].VideoEncoderConfiguration.Resolution.Width,
        }
        out["stream_uri"] = media.GetStreamUri(
            {"StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}, "ProfileToken": token}
        ).Uri
        out["snapshot_uri"] = media.GetSnapshotUri({"ProfileToken": token}).Uri
        out["network_mac"] = cam.devicemgmt.GetNetworkInterfaces()[0].Info.HwAddress
    except Exception as e:  # noqa: BLE001
        out["error"] = repr(e)
    try:
        # The Events service's pull point: the first pull tells every topic's state.
        from zeep.plugins import HistoryPlugin

        pullpoint = cam.create_pullpoint_service()
        # zeep drops the text of a topic expression (mixed content): read it from the
        # envelope as received.
        history = HistoryPlugin()
        pullpoint.zeep_client.plugins.append(history)
        pulled = pullpoint.PullMessages({"Timeout": "PT2S", "MessageLimit": 10})
        envelope = history.last_received["envelope"]
        topics = [t.text for t in envelope.iter("{http://docs.oasis-open.org/wsn/b-2}Topic")]
        out["events"] = [
            {"topic": topic, "operation": m.Message._value_1.attrib.get("PropertyOperation")}
            for topic, m in zip(topics, pulled.NotificationMessage)
        ]
        again = pullpoint.PullMessages({"Timeout": "PT1S", "MessageLimit": 10})
        out["events_then"] = len(again.NotificationMessage)
    except Exception as e:  # noqa: BLE001
        out["events_error"] = repr(e)
    try:
        wrong = ONVIFCamera(host, http_port, user, password + "x", wsdl, no_cache=True)
        wrong.devicemgmt.GetDeviceInformation()
        out["wrong_password"] = "accepted"
    except Exception as e:  # noqa: BLE001
        cause = e.__cause__ or e
        out["wrong_password"] = " ".join(
            [str(getattr(cause, "message", cause))] + [str(s) for s in (getattr(cause, "subcodes", None) or [])]
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
