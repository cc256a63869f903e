"""Run inside the fixture guest: the libkvm API with kvm_open(3)'s defaults (corefile NULL:
the live system's memory), printing what it opened and read as one JSON object."""

import json

from kvmfx import kvm

errbuf = bytearray()
kd = kvm.kvm_openfiles(None, None, None, kvm.O_RDONLY, errbuf)
out: dict = {"opened": kd is not None, "errbuf": errbuf.decode("utf-8", "replace")}
if kd is not None:
    out["corefile_used"] = kd.session.corefile_used
    nl = [kvm.nlist("init_task"), kvm.nlist("linux_banner")]
    out["nlist_missing"] = kvm.kvm_nlist(kd, nl)
    out["nlist"] = {n.n_name: n.n_value for n in nl}
    out["nlist_error"] = kvm.kvm_geterr(kd)
    buf = bytearray(512)
    n = kvm.kvm_read(kd, nl[1].n_value, buf, len(buf)) if nl[1].n_value else -1
    out["read"] = n
    out["banner"] = bytes(buf[:max(n, 0)]).split(b"\0", 1)[0].decode("utf-8", "replace")
    out["read_error"] = kvm.kvm_geterr(kd) if n < 0 else ""
    out["close"] = kvm.kvm_close(kd)
print(json.dumps(out))
