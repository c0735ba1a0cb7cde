"""The official x402 Python SDK as a *site*, for tests/client/test_exact_sdk.py: FastAPI with the
SDK's payment middleware and its in-process `exact` facilitator (x402Facilitator passed directly as
the resource server's facilitator client, so no hosted facilitator is ever contacted), settling on
the test's anvil. Run as a subprocess only: the SDK calls os._exit on a bad configuration.

Environment: RPC, CHAIN, TOKEN, PAYTO, FACILITATOR_KEY (an anvil account that pays the gas), PORT,
PRICES ("name=amount,..."; each becomes GET /articles/<name>), TOKEN_NAME, TOKEN_VERSION."""

import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from x402 import x402Facilitator, x402ResourceServer
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator, register_exact_evm_server
from x402.mechanisms.evm.signers import FacilitatorWeb3Signer

NET = "eip155:" + os.environ["CHAIN"]
PRICES = dict(item.split("=") for item in os.environ["PRICES"].split(","))

facilitator = x402Facilitator()
register_exact_evm_facilitator(facilitator, FacilitatorWeb3Signer(os.environ["FACILITATOR_KEY"], os.environ["RPC"]), networks=NET)
server = x402ResourceServer(facilitator)
register_exact_evm_server(server, networks=NET)

extra = {"name": os.environ["TOKEN_NAME"], "version": os.environ["TOKEN_VERSION"]}
routes = {
    f"GET /articles/{name}": {
        "accepts": {"scheme": "exact", "network": NET, "payTo": os.environ["PAYTO"], "maxTimeoutSeconds": 120,
                    "price": {"amount": amount, "asset": os.environ["TOKEN"], "extra": extra}},
        "description": f"article {name}", "mimeType": "text/plain",
    }
    for name, amount in PRICES.items()
}
app = FastAPI()
middleware = payment_middleware(routes, server)


@app.middleware("http")
async def x402(request, call_next):
    return await middleware(request, call_next)


@app.get("/articles/{name}")
async def article(name: str) -> PlainTextResponse:
    return PlainTextResponse(f"the text of article {name}")


@app.get("/health")
async def health() -> PlainTextResponse:
    return PlainTextResponse("ok")


uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
