"""TradeLocker request bodies and HTTP/1.1 heads, compiled (twin: engine/_fast/_py/serialize.py)."""

from engine.model.domain import Instrument, OrderModification, OrderRequest, ProtectionType

OFFSET_DECIMALS: int
MAX_DECIMALS: int

def decimals_of(step: float) -> int: ...
def price_decimals(inst: Instrument) -> int: ...
def qty_decimals(inst: Instrument) -> int: ...
def format_number(x: float, decimals: int) -> bytes: ...
def place_order_body(req: OrderRequest) -> bytes: ...
def modify_order_body(change: OrderModification, inst: Instrument) -> bytes: ...
def modify_position_body(
    inst: Instrument,
    stop_loss: float | None,
    take_profit: float | None,
    stop_loss_type: ProtectionType | None = None,
    trailing_offset: float | None = None,
) -> bytes: ...
def close_position_body(qty: float, inst: Instrument) -> bytes: ...
def request_head(
    method: str,
    host: str,
    path: str,
    token: str,
    acc_num: int,
    developer_key: str | None = None,
    user_agent: str | None = None,
) -> bytes: ...
def order_post_head(
    host: str,
    account_id: str,
    token: str,
    acc_num: int,
    base_path: str = "/backend-api",
    developer_key: str | None = None,
    user_agent: str | None = None,
) -> bytes: ...
def with_body(head: bytes, body: bytes) -> bytes: ...
