"""Operator passwords, stored as scrypt hashes (the standard library's hashlib.scrypt).

`python -m console.passwords` reads a password and prints the hash for JIFEN_CONSOLE_USERS.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys
from dataclasses import dataclass

# scrypt's interactive-login parameters (N=2**14, r=8, p=1): about 16 MiB and tens of ms.
_N, _R, _P = 2**14, 8, 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def create(cls, password: str) -> PasswordHash:
        salt = os.urandom(16)
        return cls(_N, _R, _P, salt, cls._derive(password, salt, _N, _R, _P))

    @staticmethod
    def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2), dklen=32
        )

    @classmethod
    def parse(cls, encoded: str) -> PasswordHash:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                raise ValueError(scheme)
            parsed = cls(int(n), int(r), int(p), _unb64(salt), _unb64(digest))
        except ValueError as exc:
            raise ValueError("a password hash reads scrypt$N$r$p$salt$digest") from exc
        power_of_two = parsed.n & (parsed.n - 1) == 0
        if not (
            power_of_two and 2 <= parsed.n <= 2**20 and 1 <= parsed.r <= 32 and 1 <= parsed.p <= 16
        ):
            raise ValueError("scrypt parameters out of range")
        if len(parsed.salt) < 8 or len(parsed.digest) != 32:
            raise ValueError("a password hash needs its salt and a 32-byte digest")
        return parsed

    def encode(self) -> str:
        return f"scrypt${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}"

    def verify(self, password: str) -> bool:
        candidate = self._derive(password, self.salt, self.n, self.r, self.p)
        return hmac.compare_digest(candidate, self.digest)


def main() -> int:
    password = getpass.getpass("password: ")
    if len(password) < 12:
        print("use at least 12 characters", file=sys.stderr)
        return 2
    print(PasswordHash.create(password).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
