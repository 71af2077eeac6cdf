"""The serving certificate: self-signed, made by `openssl` on first start and kept next to the
token file. kubectl sends bearer tokens only over TLS, so the server always speaks HTTPS; the
kubeconfig carries the certificate as its certificate-authority-data."""

import ipaddress
import os
import ssl
import subprocess


def ensure_serving_cert(directory, host):
    """(cert path, key path) in `directory`, created if missing, valid for `host` and loopback."""
    cert, key = os.path.join(directory, "apiserver.crt"), os.path.join(directory, "apiserver.key")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    names = {"IP:127.0.0.1", "IP:::1", "DNS:localhost"}
    try:
        if host not in ("0.0.0.0", "::"):
            names.add(f"IP:{ipaddress.ip_address(host)}")
    except ValueError:
        names.add(f"DNS:{host}")
    os.makedirs(directory, exist_ok=True)
    tmp_key = f"{key}.tmp{os.getpid()}"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3650", "-subj", "/CN=netsim-apiserver",
             "-addext", "subjectAltName=" + ",".join(sorted(names)),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", tmp_key, "-out", f"{cert}.tmp"],
            check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        raise RuntimeError("openssl is not installed: the API server needs it once to make its "
                           "serving certificate (Debian package openssl)")
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"openssl could not make the serving certificate: {e.stderr.decode().strip()}")
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key)
    os.replace(f"{cert}.tmp", cert)
    return cert, key


def server_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx
