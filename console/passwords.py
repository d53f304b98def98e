"""Operator passwords, stored as argon2id hashes in the standard PHC string format
(`$argon2id$v=19$m=19456,t=2,p=1$salt$digest`, argon2-cffi).

Hashes made before argon2id (`scrypt$N$r$p$salt$digest`, the standard library's scrypt) still
parse and verify, and say they need a rehash: the console replaces such a hash at the
operator's next sign-in (console/auth.py), as it does an argon2id hash made with other
parameters than these.

`python -m console.passwords` reads a password and prints the hash for JIFEN_CONSOLE_USERS.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import sys
from dataclasses import dataclass

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's first argon2id option: m=19 MiB, t=2, p=1 (rated as strong as its m=46 MiB, t=1).
# The smaller memory is what fits: the console pod's limit is 384 MiB, about 110-150 MiB of
# it the process itself, and sign-ins hash in threads, CONCURRENT_HASHES at once (the others
# wait: console/auth.py), so a burst of sign-ins adds at most 4 x 19 MiB (~76 MiB measured)
# where 4 x 46 MiB would leave little headroom. A hash takes about 30 ms of one core; the
# sign-in throttle bounds how many an online guesser gets.
MEMORY_KIB, TIME_COST, PARALLELISM = 19 * 1024, 2, 1
CONCURRENT_HASHES = 4
HASHER = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_KIB,
    parallelism=PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
# A configured hash past these would let one sign-in take the pod's memory or a core for
# seconds; none of OWASP's or RFC 9106's recommendations come near them.
_MAX_MEMORY_KIB, _MAX_TIME_COST, _MAX_PARALLELISM = 64 * 1024, 10, 8


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PasswordHash:
    """A parsed hash: `scheme` is "argon2id" or "scrypt" (read only, never written)."""

    scheme: str
    encoded: str

    @classmethod
    def create(cls, password: str) -> PasswordHash:
        return cls("argon2id", HASHER.hash(password))

    @classmethod
    def parse(cls, encoded: str) -> PasswordHash:
        if encoded.startswith("scrypt$"):
            _Scrypt.parse(encoded)
            return cls("scrypt", encoded)
        try:
            params = extract_parameters(encoded)
        except InvalidHashError as exc:
            raise ValueError(
                "a password hash reads $argon2id$v=19$m=...,t=...,p=...$salt$digest "
                "(`python -m console.passwords` prints one)"
            ) from exc
        if params.type is not Type.ID:
            raise ValueError("a password hash must be argon2id")
        *_, salt, digest = encoded.split("$")
        try:  # PHC strings: standard base64, unpadded
            salt_bytes, digest_bytes = (
                base64.b64decode(s + "=" * (-len(s) % 4), validate=True) for s in (salt, digest)
            )
        except ValueError as exc:
            raise ValueError("an argon2id hash's salt and digest are base64") from exc
        if len(salt_bytes) < 8 or len(digest_bytes) < 16:
            raise ValueError("an argon2id hash needs a salt of 8+ bytes and a 16+-byte digest")
        if not (
            params.memory_cost <= _MAX_MEMORY_KIB
            and params.time_cost <= _MAX_TIME_COST
            and params.parallelism <= _MAX_PARALLELISM
        ):
            raise ValueError(
                f"argon2id parameters out of range (at most m={_MAX_MEMORY_KIB}, "
                f"t={_MAX_TIME_COST}, p={_MAX_PARALLELISM})"
            )
        return cls("argon2id", encoded)

    def encode(self) -> str:
        return self.encoded

    def verify(self, password: str) -> bool:
        if self.scheme == "scrypt":
            return _Scrypt.parse(self.encoded).verify(password)
        try:
            return HASHER.verify(self.encoded, password)
        except (VerificationError, InvalidHashError):  # the wrong password
            return False

    @property
    def needs_rehash(self) -> bool:
        """True for a scrypt hash and for argon2id with other parameters than HASHER's."""
        return self.scheme != "argon2id" or HASHER.check_needs_rehash(self.encoded)


@dataclass(frozen=True)
class _Scrypt:
    """The format the console wrote before argon2id: scrypt$N$r$p$salt$digest (urlsafe
    base64, unpadded; a 32-byte digest). Verified only, so its operators can sign in once
    and be moved to argon2id."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, encoded: str) -> _Scrypt:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                raise ValueError(scheme)
            parsed = cls(int(n), int(r), int(p), _unb64(salt), _unb64(digest))
        except ValueError as exc:
            raise ValueError("a scrypt password hash reads scrypt$N$r$p$salt$digest") from exc
        power_of_two = parsed.n & (parsed.n - 1) == 0
        if not (
            power_of_two and 2 <= parsed.n <= 2**20 and 1 <= parsed.r <= 32 and 1 <= parsed.p <= 16
        ):
            raise ValueError("scrypt parameters out of range")
        if len(parsed.salt) < 8 or len(parsed.digest) != 32:
            raise ValueError("a password hash needs its salt and a 32-byte digest")
        return parsed

    def verify(self, password: str) -> bool:
        candidate = hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=128 * self.r * (self.n + self.p + 2),
            dklen=32,
        )
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
