"""Operator keystores (`channel_node.keys`) and the `keys` / `deploy` commands, the latter against anvil.

The deploy tests are plain functions: the handler runs its own event loop, which it could not do
inside the session loop of an async test."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import traceback

import pytest
from eth_account import Account

from anvil import free_port, start_anvil
from channel_node import keys
from channel_node.cli.operator import add_deploy_command, add_keys_commands
from channel_node.config import public_endpoint
from channel_node.keys import (
    SECP256K1_N,
    KeystoreError,
    create_keystore,
    import_key,
    keystore_address,
    load_key,
    parse_private_key,
    read_password,
)
from channel_node.signing import keccak256

PASSWORD = "correct horse battery staple 7f3a"
KEY = keccak256(b"operator test key")
KEY_HEX = KEY.hex()
ENV = "CHANNEL_NODE_KEYSTORE_PASSWORD"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    """A low scrypt cost keeps each test fast; test_default_cost checks the real setting."""
    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)


def assert_no_secrets(text: str, *secrets: str) -> None:
    lowered = text.lower()
    for secret in (PASSWORD, KEY_HEX, *secrets):
        assert secret.lower() not in lowered, f"a secret leaked into: {text!r}"


def full_text(exc: BaseException) -> str:
    """The exception as a traceback would print it, chained causes and contexts included."""
    return "".join(traceback.format_exception(exc))


# ------------------------------------------------------------------ keystore files


def test_round_trip_and_file_modes(tmp_path):
    old_umask = os.umask(0o022)  # a typical umask, which would leave 0755/0644 without explicit modes
    try:
        path = tmp_path / "new-dir" / "operator.json"
        address = create_keystore(path, PASSWORD, KEY)
    finally:
        os.umask(old_umask)
    assert address == Account.from_key(KEY).address
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert os.listdir(path.parent) == ["operator.json"]  # no temporary file left behind
    document = json.loads(path.read_text())
    assert document["crypto"]["kdf"] == "scrypt" and PASSWORD not in path.read_text()
    assert load_key(path, PASSWORD) == KEY
    assert keystore_address(path) == address


def test_a_generated_key_round_trips(tmp_path):
    path = tmp_path / "generated.json"
    address = create_keystore(path, PASSWORD)
    key = load_key(path, PASSWORD)
    assert len(key) == 32 and Account.from_key(key).address == address == keystore_address(path)
    assert create_keystore(tmp_path / "other.json", PASSWORD) != address


def test_default_cost(monkeypatch, tmp_path):
    monkeypatch.setattr(keys, "SCRYPT_N", 2**18)
    path = tmp_path / "standard.json"
    create_keystore(path, PASSWORD, KEY)
    assert json.loads(path.read_text())["crypto"]["kdfparams"]["n"] == 2**18


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o660, 0o604, 0o602])
def test_refuses_a_keystore_other_users_can_access(tmp_path, file_mode):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, KEY)
    os.chmod(path, file_mode)
    with pytest.raises(KeystoreError, match="chmod 600") as caught:
        load_key(path, PASSWORD)
    assert f"{file_mode:04o}" in str(caught.value)
    os.chmod(path, 0o600)
    assert load_key(path, PASSWORD) == KEY


def test_refuses_a_directory_other_users_can_write(tmp_path):
    directory = tmp_path / "shared"
    path = directory / "k.json"
    create_keystore(path, PASSWORD, KEY)
    os.chmod(directory, 0o770)
    with pytest.raises(KeystoreError, match="writable by other users"):
        load_key(path, PASSWORD)
    with pytest.raises(KeystoreError, match="writable by other users"):  # nor writes a new one there
        create_keystore(directory / "second.json", PASSWORD, KEY)
    os.chmod(directory, 0o700)
    assert load_key(path, PASSWORD) == KEY


def test_wrong_password(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, KEY)
    wrong = "not the password 91c2"
    with pytest.raises(KeystoreError, match="wrong password") as caught:
        load_key(path, wrong)
    assert_no_secrets(full_text(caught.value), wrong)


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, KEY)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(path, "another password", None)
    with pytest.raises(KeystoreError, match="already exists"):
        import_key(path, PASSWORD, "0x" + "22" * 32)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["k.json"]


def test_refuses_an_empty_password(tmp_path):
    with pytest.raises(KeystoreError, match="empty"):
        create_keystore(tmp_path / "k.json", "", KEY)
    assert not (tmp_path / "k.json").exists()


def test_refuses_a_keystore_whose_address_field_was_changed(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, KEY)
    document = json.loads(path.read_text())
    document["address"] = "11" * 20  # `keys show` trusts this field, so loading must check it
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError, match="does not match"):
        load_key(path, PASSWORD)


def test_refuses_missing_and_damaged_files(tmp_path):
    with pytest.raises(KeystoreError, match="no keystore at"):
        load_key(tmp_path / "absent.json", PASSWORD)
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    os.chmod(damaged, 0o600)
    with pytest.raises(KeystoreError, match="not an Ethereum keystore"):
        load_key(damaged, PASSWORD)
    with pytest.raises(KeystoreError, match="not an Ethereum keystore"):
        keystore_address(damaged)


# ------------------------------------------------------------------ importing keys


@pytest.mark.parametrize(
    "text",
    [KEY_HEX, "0x" + KEY_HEX, "0X" + KEY_HEX.upper(), f"  {KEY_HEX}\n", f"0x{KEY_HEX}\r\n"],
    ids=["bare", "0x", "upper", "whitespace", "crlf"],
)
def test_import_accepts_the_usual_spellings(tmp_path, text):
    path = tmp_path / "k.json"
    assert import_key(path, PASSWORD, text) == Account.from_key(KEY).address
    assert load_key(path, PASSWORD) == KEY


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no private key"),
        ("0x", "no private key"),
        (KEY_HEX[:-2], "64 hex digits"),
        (KEY_HEX + "ab", "64 hex digits"),
        (KEY_HEX[:-1] + "g", "not hex digits"),
        ("0x" + KEY_HEX[:-1] + " ", "64 hex digits"),
        ("00" * 32, "zero"),
        (f"{SECP256K1_N:064x}", "group order"),
        ("ff" * 32, "group order"),
    ],
    ids=["empty", "bare-0x", "short", "long", "non-hex", "inner-space", "zero", "order", "max"],
)
def test_import_rejects_bad_keys_without_echoing_them(tmp_path, text, message):
    with pytest.raises(KeystoreError, match=message) as caught:
        import_key(tmp_path / "k.json", PASSWORD, text)
    if len(text.strip()) > 4:
        assert_no_secrets(full_text(caught.value), text.strip().removeprefix("0x"))
    assert not (tmp_path / "k.json").exists()


def test_parse_private_key_rejects_a_non_hex_key_without_context():
    with pytest.raises(KeystoreError) as caught:
        parse_private_key("zz" * 32)
    # bytes.fromhex/int() errors quote their input; none may hang off the exception as context.
    assert caught.value.__context__ is None and caught.value.__cause__ is None


# ------------------------------------------------------------------ passwords


def test_read_password_from_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, PASSWORD)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("prompted although the variable is set"))
    assert read_password(confirm=True) == PASSWORD
    monkeypatch.setenv(ENV, "")
    with pytest.raises(KeystoreError, match="empty"):
        read_password(confirm=False)


def test_read_password_prompts_and_confirms(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    answers = iter([PASSWORD, PASSWORD, PASSWORD, "typo", "", "x"])
    prompts = []

    def fake_getpass(prompt=""):
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert read_password(confirm=True) == PASSWORD and len(prompts) == 2
    with pytest.raises(KeystoreError, match="do not match") as caught:
        read_password(confirm=True)
    assert_no_secrets(full_text(caught.value), "typo")
    with pytest.raises(KeystoreError, match="empty"):
        read_password(confirm=False)

    def no_terminal(prompt=""):
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_terminal)
    with pytest.raises(KeystoreError, match=ENV):
        read_password(confirm=False)


# ------------------------------------------------------------------ the commands


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="channel-node")
    commands = root.add_subparsers(dest="command", required=True)
    add_keys_commands(commands)
    add_deploy_command(commands)
    return root


def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return args.handler(args)


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv(ENV, PASSWORD)


def test_keys_new_and_show(tmp_path, capsys, password_env):
    path = tmp_path / "keys" / "operator.json"
    assert run("keys", "new", "--keystore", str(path)) == 0
    address = capsys.readouterr().out.strip()
    assert address == Account.from_key(load_key(path, PASSWORD)).address
    os.environ.pop(ENV)  # `show` needs no password
    assert run("keys", "show", "--keystore", str(path)) == 0
    assert capsys.readouterr().out.strip() == address


def test_keys_new_refuses_an_existing_file(tmp_path, capsys, password_env):
    path = tmp_path / "k.json"
    path.write_text("precious")
    assert run("keys", "new", "--keystore", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists" in err and err.count("\n") == 1
    assert path.read_text() == "precious"


def test_keys_import_from_stdin_and_key_file(tmp_path, capsys, monkeypatch, password_env):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"0x{KEY_HEX}\nsecond line is not read\n"))
    assert run("keys", "import", "--keystore", str(tmp_path / "a.json")) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == Account.from_key(KEY).address
    assert_no_secrets(captured.out + captured.err)

    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY_HEX + "\n")
    assert run("keys", "import", "--keystore", str(tmp_path / "b.json"), "--key-file", str(key_file)) == 0
    assert capsys.readouterr().out.strip() == Account.from_key(KEY).address
    assert load_key(tmp_path / "b.json", PASSWORD) == KEY


def test_keys_import_never_takes_the_key_as_an_argument(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["keys", "import", "--keystore", str(tmp_path / "k.json"), KEY_HEX])
    capsys.readouterr()


@pytest.mark.parametrize("text", [KEY_HEX[:-1] + "q", "00" * 32, ""])
def test_keys_import_rejects_a_bad_key_in_one_line(tmp_path, capsys, monkeypatch, password_env, text):
    monkeypatch.setattr("sys.stdin", io.StringIO(text + "\n"))
    assert run("keys", "import", "--keystore", str(tmp_path / "k.json")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    if text:
        assert_no_secrets(captured.err, text)
    assert not (tmp_path / "k.json").exists()


def test_keys_show_errors(tmp_path, capsys):
    assert run("keys", "show", "--keystore", str(tmp_path / "absent.json")) == 2
    assert "no keystore at" in capsys.readouterr().err


# ------------------------------------------------------------------ deploy against anvil


@pytest.fixture(scope="module")
def anvil():
    chain = start_anvil()
    yield chain
    chain.stop()


def deployed_address(out: str) -> str:
    line = next(line for line in out.splitlines() if line.strip().startswith("contract "))
    return line.split()[-1]


def max_deposit_of(anvil, address: str) -> int:
    selector = "0x" + keccak256(b"maxDepositPerChannel()")[:4].hex()
    return int(anvil.rpc("eth_call", [{"to": address, "data": selector}, "latest"]), 16)


def test_deploy_with_an_unlocked_account(anvil, capsys):
    deployer = anvil.rpc("eth_accounts")[0]
    assert run("deploy", "--rpc-url", anvil.http_url, "--unlocked", deployer, "--max-deposit", "12345") == 0
    out = capsys.readouterr().out
    address = deployed_address(out)
    assert len(anvil.rpc("eth_getCode", [address, "latest"])) > 2
    assert max_deposit_of(anvil, address) == 12345
    assert f"chain id     {int(anvil.rpc('eth_chainId'), 16)}" in out and "gas used" in out


def test_deploy_over_websocket_with_explicit_gas(anvil, capsys):
    deployer = anvil.rpc("eth_accounts")[1]
    assert run("deploy", "--rpc-url", anvil.ws_url, "--unlocked", deployer, "--gas", "3000000") == 0
    address = deployed_address(capsys.readouterr().out)
    assert len(anvil.rpc("eth_getCode", [address, "latest"])) > 2
    assert max_deposit_of(anvil, address) == 2**108 - 1  # the contract's MAX_AMOUNT: uncapped


def test_deploy_with_a_funded_keystore(anvil, tmp_path, capsys, password_env):
    path = tmp_path / "deployer.json"
    key = keccak256(b"funded deployer")
    address = create_keystore(path, PASSWORD, key)
    anvil.rpc("anvil_setBalance", [address, hex(10**18)])
    assert run("deploy", "--rpc-url", anvil.http_url, "--keystore", str(path)) == 0
    captured = capsys.readouterr()
    contract = deployed_address(captured.out)
    assert len(anvil.rpc("eth_getCode", [contract, "latest"])) > 2
    assert f"deployer     {address}" in captured.out
    assert_no_secrets(captured.out + captured.err, key.hex())


def test_deploy_refuses_an_account_without_funds(anvil, tmp_path, capsys, password_env):
    path = tmp_path / "empty.json"
    address = create_keystore(path, PASSWORD, keccak256(b"an account nobody funded"))
    assert run("deploy", "--rpc-url", anvil.http_url, "--keystore", str(path)) == 2
    err = capsys.readouterr().err
    assert err == f"error: account {address} has no funds on chain 31337; fund it to pay for the deployment\n"


def test_deploy_reports_too_little_funds(anvil, tmp_path, capsys, password_env):
    path = tmp_path / "poor.json"
    address = create_keystore(path, PASSWORD, keccak256(b"an account with 1000 wei"))
    anvil.rpc("anvil_setBalance", [address, hex(1000)])
    assert run("deploy", "--rpc-url", anvil.http_url, "--keystore", str(path)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: account {address} has insufficient funds for the deployment on chain 31337 (balance 1000 wei)\n"
    )


def test_deploy_reports_an_account_the_node_cannot_sign_for(anvil, capsys):
    stranger = "0x" + "12" * 20
    anvil.rpc("anvil_setBalance", [stranger, hex(10**18)])
    assert run("deploy", "--rpc-url", anvil.http_url, "--unlocked", stranger) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the deployment failed: ") and "--unlocked needs" in err and err.count("\n") == 1


def test_deploy_refuses_a_wrong_password(anvil, tmp_path, capsys, monkeypatch):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, KEY)
    monkeypatch.setenv(ENV, "wrong horse")
    assert run("deploy", "--rpc-url", anvil.http_url, "--keystore", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: wrong password") and err.count("\n") == 1
    assert_no_secrets(err, "wrong horse")


def test_deploy_to_an_unreachable_endpoint(capsys):
    url = f"http://127.0.0.1:{free_port()}/v3/secret-api-key"
    assert run("deploy", "--rpc-url", url, "--unlocked", "0x" + "11" * 20) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: cannot reach the chain at http://127.0.0.1:")
    assert "secret-api-key" not in captured.err and "Traceback" not in captured.err


def test_deploy_argument_errors(capsys):
    for argv in (
        ["deploy", "--rpc-url", "http://x"],  # neither --keystore nor --unlocked
        ["deploy", "--rpc-url", "http://x", "--unlocked", "0x12"],
        ["deploy", "--rpc-url", "http://x", "--unlocked", "0x" + "11" * 20, "--max-deposit", "-1"],
        ["deploy", "--rpc-url", "http://x", "--unlocked", "0x" + "11" * 20, "--max-deposit", str(2**108)],
        ["deploy", "--rpc-url", "http://x", "--unlocked", "0x" + "11" * 20, "--gas", "0"],
    ):
        with pytest.raises(SystemExit) as caught:
            parser().parse_args(argv)
        assert caught.value.code == 2
    capsys.readouterr()


def test_public_url_hides_credentials():
    assert public_endpoint("https://user:pw@rpc.example.org:8545/v3/abc?key=1") == "https://rpc.example.org:8545/..."
    assert public_endpoint("ws://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert public_endpoint("nonsense") == "the given URL"
