"""High-precision phrase rules: phrases matched over Sudachi-normalized tokens.

Each rule fires a feature such as ``svc:portal`` or ``cause:load``; the models learn how much to trust it.
The ``svc:`` rules are the names and hints of ``store.records.SERVICE_WORDS``.
"""

from __future__ import annotations

from functools import lru_cache

from classifier.text import normalize, tokens
from store.records import SERVICE_WORDS

RULES: dict[str, list[str]] = {
    **{f"svc:{service}": [*words.names, *words.hints] for service, words in SERVICE_WORDS.items()},
    "cause:load": ["申請が殺到", "申請殺到", "更新ラッシュ", "駆け込み", "窓口が混雑", "長蛇の列", "待ち時間", "混み合", "予約が取れない", "順番待ち", "集中し", "申請が急増", "急増", "アクセス集中", "アクセスが集中", "アクセスの集中", "申込が殺到", "申し込みが殺到", "殺到", "過負荷",
                   "混雑", "つながりにくい", "繋がりにくい", "アクセスしにくい"],
    "cause:defect": ["処理遅延", "システム遅延", "エラー通知", "機能せず", "機能しなかった", "黒丸", "外字", "仕様", "誤作動", "読み取りエラー", "読み取れない", "読み込めない", "読み取り不良", "起動しない", "改修漏れ", "フリーズ", "動作不良", "端末の不具合", "カードリーダーの不具合", "システムの欠陥", "プログラムミス", "設計ミス", "表示されない文字", "不具合", "プログラムの誤り", "プログラムのミス", "バグ", "設定誤り", "設定ミス", "システムの不具合",
                     "改修", "更新プログラム"],
    "cause:data_error": ["該当資格なし", "資格情報なし", "資格情報が無効", "資格無効", "有効期限切れ", "期限切れ", "10割", "十割", "全額自己負担", "家族名義", "本人以外の名義", "別人の情報", "他人の医療情報", "他人の年金", "紐づけ", "ひもづけ", "紐付けの誤り", "データの誤り", "登録誤り", "反映されていない", "反映が遅れ", "未登録", "資格喪失", "資格が確認できない", "資格確認ができない", "確認できず", "誤って紐付け", "名義の口座", "情報が表示", "紐付け誤り", "紐づけ誤り", "誤登録", "別人", "他人の", "誤って登録", "ひも付け", "紐付けミス"],
    "cause:human_error": ["誤って交付", "別人に交付", "渡し間違い", "誤廃棄", "誤配", "確認を怠", "人為的", "手作業", "作業ミス", "担当者のミス", "ミスで", "不適切な取り扱い", "置き忘れ", "誤交付", "紛失", "誤送付", "職員のミス", "確認不足", "入力ミス", "取り違え"],
    "cause:network": ["通信障害", "回線障害", "ネットワーク障害", "回線", "LGWAN", "通信回線", "ネットワーク"],
    "cause:external": ["再委託", "再委託先", "中国の業者", "中国の企業", "海外の業者", "委託業者", "外部委託", "停電", "業者側", "民間事業者", "システム事業者", "クラウド", "委託先", "ベンダー", "外部サービス", "世界的", "大規模障害", "事業者側"],
    "cause:attack": ["詐欺", "不審な電話", "不審なメール", "偽造", "偽造カード", "乗っ取り", "機種変更", "不正取得", "不正利用", "還付金詐欺", "偽メール", "注意喚起", "だまし取", "サイバー", "攻撃", "不審なSMS", "偽の", "不正アクセス", "サイバー攻撃", "DDoS", "フィッシング", "ランサムウェア", "なりすまし", "偽サイト",
                     "情報漏えい", "情報漏洩"],
    "cause:maintenance": ["メンテナンス", "計画停止", "システムメンテナンス", "一時停止します", "休止", "停止予定",
                          "サービスを停止"],
    "cause:unknown": ["原因は分かっていない", "原因を確認中", "詳しい原因", "原因は明らかになっていない", "原因究明", "原因を調査中", "調査中", "原因は不明", "原因不明", "原因を調べて"],
    "trouble": ["相次ぐ", "相次いだ", "確認できない", "受診できず", "支払いを求められ", "不備", "ミス", "誤り", "漏えい", "被害", "できなくなった", "利用できなくなる", "発生しておりました", "ご迷惑", "障害", "システム障害", "停止", "エラー", "できない", "利用できない", "使えない", "ログインできない",
                "トラブル", "つながらない", "繋がらない", "表示されない"],
    "pos:recovery": ["復旧", "再開", "解消", "正常に", "回復"],
    "pos:praise": ["便利", "スムーズ", "好評", "増加", "拡大", "向上", "簡単"],
    "pos:growth": ["突破", "過去最多", "最多", "達成", "上回", "普及が進", "始まりました", "始めます", "スタート", "公開",
                   "利用できるように", "できるようになりました", "可能に", "拡充", "お得", "最大2万", "ありがとう", "感謝", "成果",
                   "好調", "順調", "手軽", "便利に", "短縮"],
    "neg:protest": ["抗議", "反対", "改悪", "危険性", "性急", "見直し", "強行", "中止を求め", "不信", "返納", "解除",
                    "撤廃", "廃止反対", "懸念の声", "疑問", "批判の声", "求める声", "押しつけ", "強制"],
    "neg:criticism": ["批判", "不安", "混乱", "懸念", "苦情", "怒り", "撤回", "反発", "問題"],
    "reg:explainer": ["対処法", "原因と対処法", "解説", "とは", "使えないときは", "注意点", "まとめ", "よくある質問", "ケース"],
    "reg:survey": ["調査", "アンケート", "回答", "割合", "保険医", "保団連", "医療機関の", "医師会", "件数"],
    "reg:apology": ["おわび", "お詫び", "謝罪", "陳謝", "申し訳", "遺憾", "おわびし", "謝った"],
    "neg:harm": ["被害", "受診できない", "全額", "負担", "不満", "困惑", "戸惑い", "立ち往生", "窓口で", "怒号", "受診控え"],
    "lookalike:disability": ["障害者", "障害年金", "発達障害", "障害者手帳", "障害児", "精神障害", "障害福祉"],
    "lookalike:mina": ["マイナス", "マイナス金利", "マイナビ", "マイナー", "マイナーチェンジ"],
    "lookalike:other_outage": ["ATM", "銀行", "鉄道", "運転見合わせ", "携帯電話", "電子カルテ", "全銀"],
}


@lru_cache(maxsize=1)
def _phrases() -> dict[str, tuple[tuple[tuple[str, ...], str], ...]]:
    """Per first token, the phrases that start with it (as tokens) and their rule ids; a phrase two rules
    share fires both, one written twice in a rule (つながりにくい, 繋がりにくい: the same tokens) fires once."""
    by_first: dict[str, set[tuple[tuple[str, ...], str]]] = {}
    for rule, phrases in RULES.items():
        for phrase in phrases:
            if words := tuple(tokens(normalize(phrase))):
                by_first.setdefault(words[0], set()).add((words, rule))
    return {first: tuple(sorted(found)) for first, found in by_first.items()}


def _hits(words: list[str], prefix: str, phrases: dict) -> list[str]:
    # Every occurrence of every phrase, overlapping ones too (as spaCy's PhraseMatcher finds them): one
    # dict lookup a token, a comparison only where a phrase starts. Cheaper than a Doc and a matcher pass,
    # which cost a headline more than its tokenizing's third.
    out = []
    for i, word in enumerate(words):
        for phrase, rule in phrases.get(word, ()):
            if len(phrase) == 1 or tuple(words[i:i + len(phrase)]) == phrase:
                out.append(prefix + rule)
    return out


def rule_hits_batch(items: list[tuple[list[str], list[str]]]) -> list[list[str]]:
    """Per (title tokens, body tokens), the rule ids prefixed T: (matched in the title) or B: (in the
    body); no match spans title and body."""
    phrases = _phrases()
    return [_hits(title, "T:", phrases) + _hits(body, "B:", phrases) for title, body in items]
