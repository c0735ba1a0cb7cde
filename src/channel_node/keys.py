"""Encrypted operator keys: Ethereum V3 keystore files (scrypt), as geth and eth-account write them.

A keystore is written once, atomically, mode 0600, and never overwritten: losing the old file can
mean losing the funds it controls. Loading refuses a file other users could read or replace. No
message here ever contains a password or key material.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.address import is_hex_address, to_checksum_address

from channel_node.errors import UsageError

#: scrypt cost (N). 2**18 is geth's "standard" keystore setting and eth-account's default: about a
#: second per unlock, which is the point. Tests lower it to stay fast.
SCRYPT_N = 2**18

#: The secp256k1 group order: a private key is an integer in [1, n-1].
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

PASSWORD_ENV = "CHANNEL_NODE_KEYSTORE_PASSWORD"


class KeystoreError(UsageError):
    """A keystore cannot be written, read or unlocked; the message is safe to show to the user."""


# ------------------------------------------------------------------ keys


def validate_private_key(key: bytes) -> bytes:
    """`key` if it is a usable secp256k1 private key, else KeystoreError (without the key)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise KeystoreError("a private key is exactly 32 bytes")
    value = int.from_bytes(key, "big")
    if value == 0:
        raise KeystoreError("the private key is zero, which is not a valid key")
    if value >= SECP256K1_N:
        raise KeystoreError("the private key is not below the secp256k1 group order, so it is not a valid key")
    return bytes(key)


def parse_private_key(text: str) -> bytes:
    """A hex private key (64 digits, with or without 0x, surrounding whitespace ignored) as bytes."""
    digits = text.strip()
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits:
        raise KeystoreError("no private key given")
    if len(digits) != 64:
        raise KeystoreError(f"a private key is 64 hex digits (32 bytes); got {len(digits)} characters")
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = None  # raised outside the handler so no exception context carries the input
    if key is None:
        raise KeystoreError("the private key contains characters that are not hex digits")
    return validate_private_key(key)


# ------------------------------------------------------------------ writing


def create_keystore(path: Path, password: str, private_key: bytes | None = None) -> str:
    """Encrypts `private_key` (a new random key when None) into a new keystore at `path`; returns the
    checksum address. Refuses to overwrite anything. A missing parent directory is created 0700."""
    path = Path(path)
    if not password:
        raise KeystoreError("refusing an empty keystore password")
    key = validate_private_key(private_key) if private_key is not None else _new_key()
    if path.exists() or path.is_symlink():
        raise KeystoreError(f"{path} already exists; refusing to overwrite a keystore")
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask; make it exact
    _check_directory(directory)

    document = Account.encrypt(key, password, kdf="scrypt", iterations=SCRYPT_N)
    data = json.dumps(document, indent=2).encode() + b"\n"
    _write_new_file(path, data)
    return to_checksum_address(document["address"])


def import_key(path: Path, password: str, private_key_hex: str) -> str:
    """Validates a hex private key and writes it into a new keystore at `path`; returns the address."""
    return create_keystore(path, password, parse_private_key(private_key_hex))


def _new_key() -> bytes:
    while True:  # the loop ends at once in practice: an invalid draw has probability ~2**-128
        key = secrets.token_bytes(32)
        if 0 < int.from_bytes(key, "big") < SECP256K1_N:
            return key


def _write_new_file(path: Path, data: bytes) -> None:
    """Writes `data` to a 0600 temporary file beside `path`, fsyncs it, then moves it into place
    without ever replacing an existing file (a hard link fails if the name exists; os.replace is the
    fallback on file systems without hard links, after the existence check above)."""
    directory = path.parent
    temp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask can only remove bits; this pins the mode exactly
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            raise KeystoreError(f"{path} already exists; refusing to overwrite a keystore") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if path.exists():
                raise KeystoreError(f"{path} already exists; refusing to overwrite a keystore") from None
            os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _fsync_directory(directory)  # the new name itself survives a crash


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the data itself is already synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ reading


def _check_directory(directory: Path) -> None:
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    if mode & 0o022:
        raise KeystoreError(
            f"directory {directory} is writable by other users (mode {mode:04o}), so they could replace "
            f"the keystore; run `chmod go-w {directory}` or keep keystores in a private directory"
        )


def _read_keystore(path: Path, *, check_permissions: bool) -> dict[str, Any]:
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeystoreError(f"no keystore at {path}") from None
    except OSError as exc:
        raise KeystoreError(f"cannot open keystore {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # the opened file itself, so a swap after the check changes nothing
        if not stat.S_ISREG(info.st_mode):
            raise KeystoreError(f"{path} is not a regular file")
        if check_permissions:
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeystoreError(
                    f"keystore {path} is accessible by other users (mode {mode:04o}); run `chmod 600 {path}`"
                )
            # Whoever can write the directory can swap the file (or a symlink's target) for their own.
            for directory in {path.absolute().parent, path.resolve().parent}:
                _check_directory(directory)
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read()
    finally:
        os.close(fd)
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("crypto") or document.get("Crypto"), dict):
        raise KeystoreError(f"{path} is not an Ethereum keystore (JSON with a 'crypto' section)")
    return document


def keystore_address(path: Path) -> str:
    """The checksum address a keystore declares, read without the password (the field is not
    authenticated; `load_key` checks it against the decrypted key)."""
    address = _read_keystore(path, check_permissions=False).get("address")
    if not isinstance(address, str) or not is_hex_address(address if address.startswith("0x") else "0x" + address):
        raise KeystoreError(f"keystore {path} has no valid 'address' field")
    return to_checksum_address(address if address.startswith("0x") else "0x" + address)


def load_key(path: Path, password: str) -> bytes:
    """Decrypts the keystore at `path`. Refuses a file other users can access, a directory other
    users can write, a wrong password, and a file whose 'address' field does not match its key."""
    document = _read_keystore(path, check_permissions=True)
    key = None
    try:
        key = bytes(Account.decrypt(document, password))
    except ValueError as exc:
        # eth-keyfile reports a wrong password as "MAC mismatch"; anything else is a damaged file.
        wrong = "mac mismatch" in str(exc).lower()
    except Exception:
        wrong = False
    if key is None:  # raised here, outside the handler, so no exception context is attached
        if wrong:
            raise KeystoreError(f"wrong password for keystore {path} (the MAC check failed)")
        raise KeystoreError(f"keystore {path} is damaged or uses an unsupported format")
    declared = document.get("address")
    if isinstance(declared, str) and declared:
        actual = Account.from_key(key).address
        if declared.lower().removeprefix("0x") != actual.lower().removeprefix("0x"):
            raise KeystoreError(f"keystore {path}: its 'address' field does not match the key it holds")
    return key


# ------------------------------------------------------------------ passwords


def read_password(confirm: bool, env_var: str = PASSWORD_ENV) -> str:
    """The keystore password: from `env_var` when set (for scripts and services), else typed at the
    terminal without echo, twice when `confirm` (a new keystore). Refuses empty and mismatched."""
    from_env = os.environ.get(env_var)
    if from_env is not None:
        if not from_env:
            raise KeystoreError(f"{env_var} is set but empty; refusing an empty keystore password")
        return from_env
    try:
        password = getpass.getpass("Keystore password: ")
        if not password:
            raise KeystoreError("refusing an empty keystore password")
        if confirm and getpass.getpass("Repeat the password: ") != password:
            raise KeystoreError("the passwords do not match")
    except (EOFError, KeyboardInterrupt):
        raise KeystoreError(f"no password given (type it at the prompt or set {env_var})") from None
    return password
