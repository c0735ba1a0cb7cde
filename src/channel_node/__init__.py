"""channel-node: a payment-channel node for content micropayments."""

__version__ = "0.1.0"
