"""The CNI contract's vocabulary: spec versions, well-known error codes and the error type.

Error codes are SPEC.md's "Error" section; codes 0-99 are reserved by the spec.
"""

import json

SPEC_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_NETCONF = 7
ERR_TRY_AGAIN = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
ERR_INTERNAL = 999


class CNIError(Exception):
    """An error as the spec shapes it: {"cniVersion", "code", "msg", "details"}."""

    def __init__(self, code, msg, details=""):
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, cni_version="1.1.0"):
        doc = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def dumps(self, cni_version="1.1.0"):
        return json.dumps(self.to_json(cni_version))

    @classmethod
    def from_json(cls, doc):
        return cls(doc.get("code", ERR_INTERNAL), doc.get("msg", ""), doc.get("details", ""))

    def __str__(self):
        text = f"CNI error {self.code}: {self.msg}"
        return f"{text} ({self.details})" if self.details else text
