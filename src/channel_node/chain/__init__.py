"""The chain edge: contract artifacts, typed contract client over web3.py."""
