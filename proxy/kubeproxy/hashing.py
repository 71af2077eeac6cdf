"""Chain names of Service ports and endpoints, hashed exactly as upstream kube-proxy does.

The 16-character suffix is base32(sha256(...)) so that every node computes the same name for
the same Service port; iptables chain names are limited to 28 characters.
"""

import base64
import hashlib

SVC = "KUBE-SVC-"
SVL = "KUBE-SVL-"
EXT = "KUBE-EXT-"
FW = "KUBE-FW-"
SEP = "KUBE-SEP-"

SERVICE_CHAIN_PREFIXES = (SVC, SVL, EXT, FW, SEP)


def _hash16(text):
    # Base32 turns each 5 bytes into 8 characters, so the digest's first 10 bytes are exactly
    # upstream's first 16 characters, at a third of the cost of encoding all 32 (40k names at 10k
    # Services).
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


def port_proto_hash(service_port_name, protocol):
    """SERVICE_PORT_NAME is "ns/name:port" ("ns/name" for an unnamed port); PROTOCOL lower case."""
    return _hash16(service_port_name + protocol)


def service_chains(service_port_name, protocol):
    """The (KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW-) chain names of one Service port."""
    h = port_proto_hash(service_port_name, protocol)
    return SVC + h, SVL + h, EXT + h, FW + h


def endpoint_chain(service_port_name, protocol, endpoint):
    """The KUBE-SEP- chain of ENDPOINT ("ip:port") behind one Service port."""
    return SEP + _hash16(service_port_name + protocol + endpoint)


def is_service_chain(chain):
    """True for the per-Service chains kube-proxy owns (and may delete when stale)."""
    return chain.startswith(SERVICE_CHAIN_PREFIXES)
