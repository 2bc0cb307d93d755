"""The relevance gate: marks items that are clearly not about the My Number systems.

Marked items are kept (analysts can audit them); the classifier makes the final call on the rest.
The gate is deliberately loose: it only rejects items that name none of the systems at all.
"""

from __future__ import annotations

import re
import unicodedata

_MYNUMBER = re.compile(
    "|".join([
        r"マイナ(?!ス|ビ|ー|ン(?!バー))",  # マイナ保険証, マイナポータル, マイナンバー; not マイナス/マイナビ/マイナー
        r"マイナンバー", r"個人番号", r"電子証明書", r"公的個人認証", r"jpki", r"j-lis",
        r"地方公共団体情報システム機構", r"コンビニ交付", r"資格確認", r"公金受取口座", r"顔認証付き?カードリーダー",
        r"保険証", r"住民票.{0,10}コンビニ", r"コンビニ.{0,12}(住民票|証明書|印鑑登録)", r"証明書.{0,6}交付", r"交付窓口", r"カード管理システム",
        r"マイナポイント", r"署名用", r"利用者証明用", r"情報連携", r"デジタル庁", r"免許証.{0,8}一体化",
    ]),
    re.IGNORECASE,
)


def gate_reason(title: str, text: str, categories: tuple[str, ...] = ()) -> str | None:
    """None when the item may be about the systems; otherwise why it was rejected."""
    raw = " ".join((title, text, *categories))
    if _MYNUMBER.search(raw) or _MYNUMBER.search(unicodedata.normalize("NFKC", raw)):  # ＪＰＫＩ, ﾏｲﾅ ...
        return None
    return "names none of the My Number systems"
