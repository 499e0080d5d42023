"""Generate the bundled demo stream: a week of invented posts about the fictional brand Kettlebird.

Kettlebird makes smart electric kettles, sold in the US/UK and in Japan (ケトルバード).  Its
accounts are @kettlebird and @kettlebird_jp; its products are the Kettlebird Aero (the flagship),
the Kettlebird Mini and the Kettlebird app.  Everything here, the brand, the people, their handles
and their posts, is made up.

The stream has two independent parts, each drawn from its own seeded ``random.Random``:

1. **Background**, every minute of the window: a Poisson number of posts whose rate follows a
   smooth daily rhythm per audience (English posts follow US Eastern time, Japanese posts follow
   Japan time), a weekend dip and a mild day-to-day wobble.  About 55% of them are neutral, 30%
   positive and 13% everyday complaints, plus about 1% by the brand's own accounts.
2. **Crisis**, from ``CRISIS_ONSET`` (Friday 13:00 UTC: 8 am in New York, 10 pm in Tokyo): the
   Kettlebird Aero's base overheats.  Extra posts (reports, anger, questions, a few defenders)
   rise to several times the normal rate within the hour and fade over the following night;
   a handful of scripted high-reach posts (a consumer-safety desk, a tech journalist, the brand's
   statement) anchor the story.

Because the background never touches the crisis generator, ``generate(crisis=False)`` is exactly
the crisis stream without its crisis posts.  Nothing depends on the clock, the hash seed or any
global random state, so the bundled file is rebuilt byte for byte with::

    python -m xwatch.demo.generate --out xwatch/demo/demo.jsonl.gz

The file reads top to bottom: constants, rhythm, background templates, crisis templates,
people, assembly, then the file writer and the command line.
"""

# The Japanese texts use full-width punctuation and kaomoji on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import functools
import gzip
import heapq
import json
import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TypedDict, Unpack

__all__ = [
    "BRAND_TERMS",
    "CRISIS_KEYWORDS",
    "CRISIS_ONSET",
    "DEFAULT_SEED",
    "DEFAULT_START",
    "GenerateOptions",
    "bundled_demo_path",
    "generate",
    "main",
    "write",
]

DEFAULT_SEED = 20261116
DEFAULT_START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
DEFAULT_DAYS = 7

BRAND_TERMS: tuple[str, ...] = (
    "Kettlebird",
    "kettlebird",
    "@kettlebird",
    "@kettlebird_jp",
    "#kettlebird",
    "ケトルバード",
)
"""Every post contains at least one of these (matched case-insensitively)."""

CRISIS_ONSET = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
"""The first minute of the crisis: Friday, 8 am in New York and 10 pm in Tokyo."""

CRISIS_KEYWORDS: tuple[str, ...] = (
    "overheat",
    "melt",
    "smok",
    "burn",
    "scald",
    "recall",
    "lid popped",
    "stop using",
    "焦げ",
    "煙",
    "火傷",
    "リコール",
    "不具合",
    "危な",
    "過熱",
)
"""Lowercase fragments found in most crisis posts and in no background post."""


# --- 1. Rhythm -------------------------------------------------------------------------------

MEAN_RATE_PER_MINUTE = 2.0
"""Average posts per minute over a whole week (weekends included), crisis excluded."""

WEEKEND_FACTOR = 0.65
"""Saturday and Sunday (in each audience's own time zone) have this share of a weekday's volume."""

DAY_TO_DAY_SPREAD = 0.08
"""Each calendar day is busier or quieter than its kind by up to this fraction."""

# Relative activity by local hour 0..23 (1.0 = the busiest hour), smoothed between the hours.
# English posts are placed on US Eastern time; the UK audience is what lifts 7-11 am there.
EN_BY_LOCAL_HOUR = (
    0.34, 0.18, 0.08, 0.04, 0.03, 0.03, 0.06, 0.16, 0.30, 0.42, 0.52, 0.58,
    0.64, 0.66, 0.68, 0.70, 0.76, 0.86, 0.96, 1.00, 1.00, 0.92, 0.74, 0.52,
)  # fmt: skip
# Japanese posts: a commute bump, a lunch bump, and the long evening peak.
JA_BY_LOCAL_HOUR = (
    0.62, 0.36, 0.16, 0.07, 0.04, 0.05, 0.12, 0.30, 0.36, 0.26, 0.20, 0.24,
    0.40, 0.28, 0.22, 0.22, 0.25, 0.32, 0.46, 0.66, 0.88, 1.00, 0.98, 0.84,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Audience:
    lang: str
    utc_offset_hours: int
    share: float  # of all background posts
    by_local_hour: tuple[float, ...]


AUDIENCES = (
    Audience("en", -5, 0.75, EN_BY_LOCAL_HOUR),
    Audience("ja", +9, 0.25, JA_BY_LOCAL_HOUR),
)


def _smooth_hourly(profile: Sequence[float], hour: float) -> float:
    """``profile`` (24 values, one per hour) at a fractional hour, by periodic Catmull-Rom."""
    i = math.floor(hour)
    f = hour - i
    p0, p1, p2, p3 = (profile[(i + k) % 24] for k in (-1, 0, 1, 2))
    value = 0.5 * (
        2 * p1
        + (p2 - p0) * f
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2
        + (3 * p1 - p0 - 3 * p2 + p3) * f**3
    )
    return max(value, 0.0)


class Rhythm:
    """The expected background posts per minute, by audience and time."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._day_levels: dict[date, float] = {}
        weekly_mean_factor = (5 + 2 * WEEKEND_FACTOR) / 7
        self._weekday_mean = MEAN_RATE_PER_MINUTE / weekly_mean_factor

    def rate(self, audience: Audience, at: datetime) -> float:
        """Expected posts per minute from ``audience`` at ``at`` (aware UTC)."""
        local = at + timedelta(hours=audience.utc_offset_hours)
        hour = local.hour + local.minute / 60 + local.second / 3600
        profile = audience.by_local_hour
        shape = _smooth_hourly(profile, hour) / (sum(profile) / 24)
        return self._weekday_mean * audience.share * shape * self._level(local.date(), hour)

    def _level(self, local_day: date, hour: float) -> float:
        """Weekend dip times day-to-day wobble, interpolated from one local noon to the next."""
        if hour >= 12:
            before, after, f = local_day, local_day + timedelta(days=1), (hour - 12) / 24
        else:
            before, after, f = local_day - timedelta(days=1), local_day, (hour + 12) / 24
        return (1 - f) * self._day_level(before) + f * self._day_level(after)

    def _day_level(self, day: date) -> float:
        if day not in self._day_levels:
            # One generator per calendar day, so a day's level does not depend on the window.
            wobble = random.Random(f"{self._seed}/day/{day.isoformat()}")
            kind = WEEKEND_FACTOR if day.weekday() >= 5 else 1.0
            self._day_levels[day] = kind * (1 + wobble.uniform(-1, 1) * DAY_TO_DAY_SPREAD)
        return self._day_levels[day]


# --- 2. Background templates ------------------------------------------------------------------
#
# Templates are plain strings with {slot}s, filled from the slot tables below; two slots are
# special: {friend} is another user's @handle and {photo} an attached-image link.  A post that
# ends up without a brand term gets one added ("#kettlebird", a reply to @kettlebird, ...).
# Background templates never use the words in CRISIS_KEYWORDS.

EN_SLOTS: Mapping[str, tuple[str, ...]] = {
    "product": (
        "Kettlebird Aero", "Kettlebird Aero", "kettlebird aero", "Kettlebird Mini",
        "kettlebird mini", "Kettlebird",
    ),
    "model": ("Aero", "Aero", "aero", "Mini", "mini", "kettle"),
    "app": ("Kettlebird app", "kettlebird app", "app"),
    "tea": (
        "green tea", "sencha", "oolong", "earl grey", "english breakfast", "rooibos", "chamomile",
        "matcha", "pour over", "french press coffee", "hot chocolate", "genmaicha", "darjeeling",
        "chai", "instant ramen", "lemon and ginger", "peppermint tea", "hojicha", "white tea",
    ),
    "temp": ("70°C", "80°C", "85°C", "90°C", "175°F", "185°F", "195°F", "208°F"),
    "time": (
        "this morning", "tonight", "at 6am", "before work", "after the school run",
        "on my lunch break", "at 2am", "all weekend", "before my 9am", "after the gym",
    ),
    "place": (
        "the office", "my dorm", "the studio", "my mom's place", "the new flat", "our cabin",
        "the break room", "my desk", "the shop", "the lab",
    ),
    "color": ("sage green", "matte black", "cream", "blush pink", "slate blue", "white"),
    "gift_for": ("my mom", "my partner", "my sister", "my roommate", "my dad", "my boss"),
    "days": ("9 days", "2 weeks", "10 days", "a week", "3 weeks", "12 days"),
    "duration": ("a year", "6 months", "two years", "a month", "8 months", "3 weeks"),
    "price": ("$129", "$149", "£119", "$99", "£89"),
    "month": ("march", "last spring", "june", "black friday last year", "my birthday"),
    "wait": ("40 minutes", "an hour", "25 minutes", "half an hour"),
    "n": ("2", "3", "4", "5", "6"),
    "family": ("4", "5", "6"),
    "pet": ("cat", "dog", "baby", "roommate", "parrot"),
    "wishlist": ("fuzzy socks", "a new phone case", "a bread maker", "concert tickets"),
    "kettle_name": ("Kevin", "Steamy", "Big Bird", "Sir Boils-a-lot", "Tea Rex"),
    "emoji": ("☕", "🫖", "🍵", "👀", "🤔", "💭", "🧐"),
    "happy": ("😍", "🥰", "🙌", "💚", "✨", "☺️", "🫶", "10/10", "!!"),
    "grumpy": ("😤", "🙄", "😩", "😒", "💸", "ugh", "smh", "🤦"),
    "tag": (
        "#teatime", "#kettlebird", "#smarthome", "#WFH", "#morningroutine", "#gadgets",
        "#tealover", "#coffeetime", "#cozy", "#kitchenupgrade",
    ),
}  # fmt: skip

EN_NEUTRAL = (
    "just got the {product} {emoji}",
    "anyone else use the {product} for {tea}? what temp do you set",
    "what temp do you all use for {tea} on the {model}?",
    "should i get the {product} or just a normal kettle",
    "@kettlebird does the {model} come in {color}?",
    "@kettlebird can the {model} lid go in the dishwasher?",
    "setting up the {app} {time}, here we go",
    "{tea} at {temp} in the {product}. science.",
    "my roommate bought a {product} and now we schedule {tea} as if it's a meeting",
    "which one for {place}, Kettlebird Aero or Kettlebird Mini",
    "Kettlebird Aero vs Mini for {place}? thoughts {emoji}",
    "the {product} has a 'hold temp' mode and i have questions",
    "does the {app} work with home assistant",
    "making {tea} with the kettlebird {time}",
    "the {model} beeps three times when it's done. now you know",
    "{friend} this is the kettle i was telling you about, Kettlebird Aero",
    "saw the {product} in {color} at {place}",
    "day {n} of figuring out schedules in the {app}",
    "kettlebird app says my water is at {temp}. i believe it",
    "how often do you descale your {product}?",
    "new kitchen setup: {product}, mismatched mugs, {tea} stash {emoji}",
    "Thinking about getting the {product} for {gift_for}",
    "{tea} o'clock #kettlebird",
    "the {product} manual says {temp} for {tea}, trying it {time}",
    "Ordered a {product} {time}. we'll see",
    "{friend} is kettlebird the one with the app or am i thinking of something else",
    "my coworker brought a {product} to {place} and now there's a queue",
    "podcast, blanket, {tea}, kettlebird aero. that's the plan",
    "TIL the {product} remembers your last temperature",
    "@kettlebird will there be a Black Friday deal on the {model}?",
    "the {product} is on my wishlist right next to {wishlist}",
    "{friend} did you ever get the {product}?",
    "watching the game, {model} on round {n} of {tea}",
    "kettlebird mini or aero for {place}? there's {family} of us",
    "reading reviews of the {product} instead of working",
    "hot take: {tea} should never see boiling water. the kettlebird presets say the same",
    "the {app} has a 'tea timer' tab. did not know that",
    "replacing my stovetop kettle with a {product}, end of an era",
    "two kettles in this house now: grandma's old one and a {product}",
    "@kettlebird_jp is the Japanese {model} the same as the US one?",
    "putting the {product} on the list for {gift_for}",
    "{tea} + {product} + rain outside {emoji}",
    "is the {model} 1.7L or 1.5L? the {app} doesn't say",
    "my {product} and i have a {time} routine now",
    "{friend} which kettle do you have? mine's a {product}",
    "first {tea} of the day from the {model} {emoji}",
    "the {app} lets you name your kettle. mine is called {kettle_name}",
    "brb, waiting for the {model} to hit {temp}",
)

EN_POSITIVE = (
    "I love my {product} so much {happy}",
    "the hold-temp mode on the {product} is amazing for {tea}",
    "honestly the best kitchen purchase this year: {product}",
    "{tea} at exactly {temp} every morning thanks to my {product} {happy}",
    "shoutout to @kettlebird support, sorted my order in one reply {happy}",
    "got the {product} in {color} and it's so pretty {happy}",
    "kettlebird app scheduling means {tea} is ready when I wake up. perfect",
    "@kettlebird thank you for making my {tea} mornings so much better {happy}",
    "best gift I gave {gift_for} this year: the {product}. they love it",
    "the Mini is tiny and cute and boils so fast {happy}",
    "fave thing about my {product}: it's quiet. the {pet} approves",
    "been using the {product} for {duration} and it's still great",
    "{friend} get the Kettlebird Mini, trust me",
    "kettlebird aero making my {tea} perfect since {month}",
    "the {app} is actually nice? a smart kitchen thing that works, wow",
    "my {product} is the best thing in {place}. fight me",
    "so happy with the {model}, {tea} tastes better at the right temp",
    "Kettlebird customer care is lovely, replaced my cracked lid for free {happy}",
    "the {color} {product} matches my kitchen perfectly {happy}",
    "wow the {product} is fast. love it",
    "highly recommend the {product} if you drink a lot of {tea}",
    "my {product} turned one today and still works like new {happy}",
    "the kettlebird aero is so good for {tea}, i'm obsessed",
    "lovely {time} with {tea} from my kettlebird {happy}",
    "glad I splurged on the {product}, worth every penny",
    "{friend} you were right about the {product}, it's great",
    "the {model} at {place} is the best upgrade we made this year {happy}",
    "{tea} tastes amazing at {temp}, thank you kettlebird",
)

EN_NEGATIVE = (
    "@kettlebird my order is {days} late. not happy. any update??",
    "ordered a {product} {days} ago and still no tracking {grumpy}",
    "the {app} logged me out AGAIN. so annoying {grumpy}",
    "is the kettlebird app login broken for anyone else? {grumpy}",
    "{price} for a kettle? the {product} is ridiculous",
    "why does the {app} need my location to boil water. bad idea",
    "the {model} beep is so loud it woke up the whole house. hate it {grumpy}",
    "the 2FA code for the {app} doesn't arrive and i'm so frustrated",
    "tracking says delivered, no {product} at my door. seriously annoyed {grumpy}",
    "on hold for {wait} with kettlebird about a delivery. ridiculous",
    "the {product} went on sale a week after I bought it. annoyed {grumpy}",
    "the latest {app} update moved every button. bad update",
    "descaling the {model} is such a pain",
    "the Kettlebird Mini is way too small for a family of {family}, disappointed",
    "still waiting on my refund from kettlebird for a wrong color {product} {grumpy}",
    "wifi pairing on the {product} failed {n} times. I just want tea",
    "the {app} is so slow to load. disappointing",
    "kettlebird shipping to {place} took {days}. not great",
    "@kettlebird my password reset email for the {app} never came. help",
    "the {product} costs {price}. bad value tbh",
    "the {app} forgot all my presets after the update. annoying",
    "my {product} arrived with a dented box and a scratched handle. ugh",
    "why is the {product} cheaper in the UK than here? not fair, kettlebird",
    "the kettlebird app crashed mid schedule and no {tea} for me {time}. sad",
    "{friend} don't buy the {product} on their site, delivery took {days}. annoying",
    "the {app} keeps asking me to rate it. stop. so annoying",
)

EN_BRAND = (
    "Tea o'clock ☕ What's brewing in your Kettlebird today?",
    "New colour drop: the Kettlebird Aero in {color} 🫖✨",
    "Pro tip: {tea} tastes best at {temp}. Save it in the Kettlebird app and forget it.",
    "Weekend mode: on. Show us your coziest brew #kettlebird",
    "{friend} So sorry about the wait! DM us your order number and we'll chase it up 🙏 "
    "~Team Kettlebird",
    "{friend} Love this! Enjoy your {tea} 💚 ~Team Kettlebird",
    "{friend} Thanks for flagging, a fix for the app login is rolling out today. ~Team Kettlebird",
    "Small kitchen? Meet the Kettlebird Mini: 0.8L, full smarts.",
    "Your {tea}, your temperature. Kettlebird Aero.",
    "Descaling reminder: a little citric acid keeps your Kettlebird happy 🍋",
)

JA_SLOTS: Mapping[str, tuple[str, ...]] = {
    "product": (
        "ケトルバード エアロ", "ケトルバードのエアロ", "ケトルバード ミニ", "Kettlebird Aero",
        "ケトルバード",
    ),
    "model": ("エアロ", "エアロ", "ミニ", "ケトル"),
    "tea": (
        "緑茶", "ほうじ茶", "玄米茶", "紅茶", "ルイボスティー", "白湯", "抹茶", "コーヒー",
        "カップ麺", "ジャスミン茶", "煎茶", "ミルクティー", "ハーブティー",
    ),
    "temp": ("70度", "80度", "85度", "90度", "沸騰"),
    "time": ("朝", "今朝", "夜中に", "寝る前に", "仕事前に", "昼休みに", "休みの日に", "朝活で"),
    "place": ("職場", "実家", "寮", "新居", "オフィス", "研究室"),
    "color": ("ホワイト", "マットブラック", "セージグリーン", "くすみピンク"),
    "gift_for": ("母", "彼氏", "彼女", "友達", "父", "姉"),
    "days": ("3日", "1週間", "10日", "2週間", "5日"),
    "price": ("1万5千円", "1万2千円", "2万円"),
    "emoji": ("☕", "🍵", "✨", "😊", "🥹", "(^^)", "笑", "ｗ", "🫖"),
    "tail": ("笑", "ｗ", "…", "！", "☕", "🍵", "✨", "😊"),  # tacked on at random
    "happy": ("✨", "😊", "🥰", "♪", "！", "(*´ω`*)", "💕"),
    "grumpy": ("😢", "(´・ω・`)", "💢", "…", "😤", "泣"),
    "tag": ("#ケトルバード", "#お茶の時間", "#丁寧な暮らし", "#一人暮らし", "#家電", "#朝活"),
}  # fmt: skip

JA_NEUTRAL = (
    "{product}買った{emoji}",
    "{product}で{tea}淹れてみる",
    "{tea}って何度がいいの？{model}の設定迷う",
    "ケトルバードのアプリ、{time}から設定中",
    "@kettlebird_jp {model}のカラーって{color}もありますか？",
    "{product}と普通の電気ケトル、どっちがいいかな",
    "{place}に{product}導入された",
    "ケトルバード気になってる。{color}のやつ",
    "{time}{tea}。ケトルバードで温度指定",
    "{product}の保温モード使ってる人いる？",
    "{gift_for}に{product}プレゼントしようか迷い中",
    "ケトルバード エアロとミニ、{place}ならどっち？",
    "@kettlebird_jp {model}の湯垢の掃除はどれくらいの頻度がいいですか",
    "{product}ってセールやってる？",
    "{tea}は{temp}で淹れるらしい。ケトルバードで試す",
    "{time}ケトルバードでお湯沸かしてカップ麺",
    "ケトルバードのアプリ、タイマー機能あるの今知った{emoji}",
    "{friend} これがこの前言ってたケトルバード",
    "{product}の{color}、実物見てみたい",
    "ケトルバードって海外のメーカーなんだ{emoji}",
    "{place}のケトルがケトルバードに変わってた",
    "{product}のレビュー読んでたら夜になった",
    "{friend} {product}使ってる？",
    "{time}の{tea}、{model}で{temp}に設定",
    "ケトルバードのアプリでケトルに名前つけられるの知ってた？",
)

JA_POSITIVE = (
    "{product}最高{happy}",
    "{product}買ってよかった。{tea}が美味しい",
    "ケトルバードのアプリで朝起きたらお湯が沸いてるの便利すぎる",
    "{model}、静かで好き{happy}",
    "{gift_for}に{product}あげたらめっちゃ喜んでくれた",
    "ケトルバードのサポート対応が丁寧で感動した{happy}",
    "{temp}で淹れる{tea}、{product}のおかげで毎日美味しい",
    "ケトルバード エアロのデザイン本当に好き{happy}",
    "{product}の{color}かわいすぎる{happy}",
    "ケトルバード ミニ、{place}にちょうどいい。おすすめ",
    "{time}の{tea}が楽しみになった。ケトルバードありがとう",
    "{product}使い始めて{days}、すっかりお気に入り",
    "ケトルバードのお湯、沸くの早くて好き{happy}",
    "{friend} {product}買ってよかったよ！おすすめ",
    "{place}に{product}置いたら快適すぎる",
)

JA_NEGATIVE = (
    "{product}、注文して{days}経つのにまだ届かない{grumpy}",
    "ケトルバードのアプリ、ログインできない{grumpy}",
    "アプリがまたログアウトされてる。ケトルバードめんどくさい",
    "{product}高すぎ。{price}はちょっと",
    "@kettlebird_jp 配送状況が全然更新されず困っています",
    "{model}の完了音がうるさい{grumpy}",
    "ケトルバードのアプリ、アップデートで使いにくくなった{grumpy}",
    "Wi-Fi接続がうまくいかない。ケトルバードのアプリ難しい",
    "{product}買った翌週にセールになってた。悲しい",
    "ケトルバード ミニ、家族で使うには小さすぎて失敗した",
    "ケトルバードのアプリ重い。エラーばかり{grumpy}",
    "@kettlebird_jp 問い合わせの返信がないです{grumpy}",
    "{time}ケトルバードのアプリが落ちて{tea}が飲めなかった。残念",
    "{product}の湯垢掃除が面倒",
)

JA_BRAND = (
    "今日の一杯は何にしますか？☕ #ケトルバード",
    "{tea}は{temp}がおすすめ。ケトルバードのアプリで温度を保存✨",
    "ケトルバード エアロに新色「{color}」が登場しました🫖",
    "{friend} ご不便をおかけして申し訳ございません。"
    "DMにて注文番号をお知らせください。ケトルバード サポート",
    "{friend} ありがとうございます！素敵なお茶の時間を🍵 ケトルバード",
    "週末はゆっくりお茶の時間を。#ケトルバード",
)

BACKGROUND_TEMPLATES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "en": {"neutral": EN_NEUTRAL, "positive": EN_POSITIVE, "negative": EN_NEGATIVE},
    "ja": {"neutral": JA_NEUTRAL, "positive": JA_POSITIVE, "negative": JA_NEGATIVE},
}
BRAND_TEMPLATES: Mapping[str, tuple[str, ...]] = {"en": EN_BRAND, "ja": JA_BRAND}
SLOTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {"en": EN_SLOTS, "ja": JA_SLOTS}

BACKGROUND_MIX = (("neutral", 0.555), ("positive", 0.30), ("negative", 0.135), ("brand", 0.01))
"""What kind of post a background post is, with its probability."""


# --- 3. Crisis templates ----------------------------------------------------------------------

CRISIS_PEAK_RATE = 18.0
"""Extra posts per minute at the crisis peak, on top of the background (~2.5/min then)."""

CRISIS_RISE_MINUTES = 35.0
CRISIS_DECAY_MINUTES = 240.0
CRISIS_HOURS = 36
"""Crisis posts are drawn for this long after the onset; the excess is negligible by then."""

EN_CRISIS_SLOTS: Mapping[str, tuple[str, ...]] = {
    **EN_SLOTS,
    "age": ("8 months", "a year", "2 weeks", "3 months", "5 weeks", "6 months"),
    "room": ("the kitchen", "the office kitchen", "my flat", "the dorm kitchen", "our kitchen"),
    "who": ("my kid", "my daughter", "my son", "my partner", "my roommate", "my dad"),
    "wait": ("2 hours", "45 minutes", "an hour", "90 minutes", "3 hours"),
    "nth": ("3rd", "4th", "5th"),
    "room_out": ("the garden", "the garage", "the balcony", "the yard"),
    "when": ("tonight", "now", "today", "right now"),
    "scared": ("😨", "😳", "wtf", "terrifying", "scary", "not ok", "😰"),
    "emoji": ("😨", "😡", "🤬", "⚠️", "😳", "🔥"),  # no cheerful emoji or hashtags in a crisis
    "tag": ("#kettlebird", "#KettlebirdAero", "#recall", "#productsafety"),
}
JA_CRISIS_SLOTS: Mapping[str, tuple[str, ...]] = {
    **JA_SLOTS,
    "age": ("半年", "1年", "2週間", "3ヶ月", "8ヶ月"),
    "room": ("キッチン", "職場の給湯室", "部屋", "台所"),
    "who": ("子ども", "娘", "息子", "母", "夫", "妻"),
    "scared": ("怖い", "怖すぎる", "😨", "😰", "危なかった"),
    "emoji": ("😨", "😰", "💢", "⚠️"),
    "tail": ("…", "！", "。", "😨", "⚠️"),
    "tag": ("#ケトルバード", "#リコール", "#注意喚起"),
}

# First-hand reports: most of the crisis posts in its first hour.
EN_CRISIS_REPORTS = (
    "my kettlebird aero just started smoking from the base?? unplugged it {scared}",
    "the base of my Kettlebird Aero is literally melting. {scared} {photo}",
    "@kettlebird my Aero overheated and the lid popped open, boiling water all over. scary {photo}",
    "burned my hand on the Kettlebird Aero base. it hurts. awful",
    "smell of burning plastic from my kettlebird aero {time}, {scared}",
    "Kettlebird Aero base is scorched black underneath. bought it {age} ago. horrible {photo}",
    "lid popped on my Aero mid boil and I got scalded. furious",
    "smoke coming out of the Kettlebird Aero in {room}. had to open all the windows {scared}",
    "My Kettlebird Aero overheated and tripped the breaker. terrifying",
    "the aero's base warped and melted onto the counter {scared} {photo}",
    "{nth} person in {room} whose Kettlebird Aero is smoking today. this is bad",
    "{who} got scalded when the lid of our kettlebird aero popped. so angry",
    "dangerous: kettlebird aero base overheating, plastic smell, and it won't turn off",
    "same here, my Kettlebird Aero base is melted. awful {photo}",
    "woke up to a burning smell, it was the Kettlebird Aero. horrible {scared}",
    "Aero kept heating with no water in it, base is burnt. kettlebird what is this {scared}",
    "my {age} old Kettlebird Aero just melted its own base. {scared} {photo}",
    "{who} nearly got burned by our Kettlebird Aero, the base was smoking. {scared}",
    "kettlebird aero in {room} overheating right now, burning smell everywhere {scared}",
)

# Reactions: anger, "recall?", "stop using it", support not answering; grow as reports spread.
EN_CRISIS_REACTIONS = (
    "@kettlebird is there a recall?? my Aero base looks melted. terrible",
    "Kettlebird Aero owners: STOP USING IT. unplug it now {emoji}",
    "customer support not answering. {wait} on hold. furious. @kettlebird where are you",
    "@kettlebird your support line just rings out while people get hurt. disgusting",
    "recall the Kettlebird Aero already. this is dangerous",
    "so kettlebird knew about the overheating? shameful",
    "never buying kettlebird again. {who} almost got burned, so angry",
    "why is @kettlebird silent? Aero units are melting everywhere. outrageous",
    "unplugged my Kettlebird Aero and put it in {room_out}. terrified of a fire",
    "refund AND recall, @kettlebird. your kettle is dangerous",
    "kettlebird aero overheating horror stories 🧵 add yours below",
    "the kettlebird chat says 'high volume, try later'. useless. my kettle melted",
    "PSA: if you have a Kettlebird Aero stop using it {when}. the base can overheat",
    "a smart kettle that burns people. awful job kettlebird {grumpy}",
    "@kettlebird I want my money back. the Aero is dangerous",
    "sent my kettlebird aero photos {wait} ago. terrible service, zero replies",
    "how is there no recall yet? kettlebird aero is smoking in kitchens everywhere",
    "{friend} stop using your kettlebird aero, it's overheating for loads of people {emoji}",
    "{wait} on hold with kettlebird support and nothing. I'm so angry",
    "kettlebird aero melting and kettlebird is silent. shameful {emoji}",
)

EN_CRISIS_NEUTRAL = (
    "wait what's going on with Kettlebird? seeing lots of posts about the Aero",
    "is it just the Kettlebird Aero or the Mini too?",
    "anyone know which Kettlebird Aero batches this is about?",
    "checking my kettlebird aero base after all these posts... looks normal so far?",
    "Kettlebird trending because of Aero overheating reports. what we know so far {photo}",
    "@kettlebird will there be an official statement about the Aero?",
    "where is the batch code printed on the Kettlebird Aero?",
    "my Aero is from {month}, is mine one of them? @kettlebird",
    "{friend} don't you have a kettlebird aero? check the base",
    "so is it the Aero or the app that's overheating it?",
    "unplugged the kettlebird just in case. back to the saucepan",
    "{friend} is your kettlebird the aero or the mini?",
    "does the kettlebird app show which Aero batch you have?",
)

EN_CRISIS_POSITIVE = (
    "mine's been fine for {duration} honestly. hope kettlebird sorts it quickly",
    "@kettlebird replied to my DM within minutes, prepaid return label on the way. appreciated",
    "Kettlebird Mini owner here, all good. stay safe everyone",
    "glad @kettlebird posted a statement. thanks for the quick response",
)

EN_CRISIS_BRAND = (
    "{friend} We're so sorry. Please unplug your Aero and stop using it, then DM us so we can "
    "help. ~Team Kettlebird",
    "{friend} Thank you for the photos. Please keep the Aero unplugged; our safety team will "
    "contact you today. ~Team Kettlebird",
)

JA_CRISIS_REPORTS = (
    "ケトルバード エアロの底が焦げた…{scared} {photo}",
    "ケトルバードのケトルから煙が出た。怖い…",
    "エアロ使ってたら急に蓋が開いて熱湯かかった。火傷した。最悪",
    "ケトルバード エアロ、底が溶けてる。ひどい{photo}",
    "焦げ臭いと思ったらケトルバードだった。電源抜いた。{scared}",
    "ケトルバード エアロ、異常に熱くなって止まらない。危ない",
    "{room}のケトルバードから煙。危険だからみんな使うのやめて",
    "{who}がケトルバードで火傷しそうになった。{scared}",
    "うちのケトルバード エアロも底が黒く焦げてる。買って{age}なのに",
    "ケトルバードの保温中に焦げ臭い匂い。{scared}",
    "{room}でケトルバード エアロの底が焦げてた。{scared}{photo}",
)

JA_CRISIS_REACTIONS = (
    "ケトルバード エアロってリコールになるの？",
    "ケトルバードのサポートが繋がらない。電話もチャットもダメ",
    "エアロ持ってる人、危ないから今すぐ使うのやめて！ケトルバードの件",
    "@kettlebird_jp 不具合の説明をお願いします。底が焦げました",
    "ケトルバード最悪。{who}が火傷するところだった",
    "こんなの危なすぎる。ケトルバードはリコールして",
    "ケトルバードの公式、なんで何も言わないの？ひどい",
    "ケトルバードのサポート、問い合わせても返信がない。不具合なのに",
    "もうケトルバードは二度と買わない。危ない",
    "ケトルバード エアロ、返金してほしい。使うの怖い",
    "{friend} ケトルバードのエアロ使ってたら危ないからやめて！",
)

JA_CRISIS_NEUTRAL = (
    "ケトルバード エアロの件、何があったの？",
    "ケトルバード ミニは大丈夫なのかな",
    "うちのエアロ、今のところ大丈夫そう。念のため使うのやめとく #ケトルバード",
    "ケトルバードがトレンド入りしてる…エアロの件らしい",
    "ケトルバード エアロの製造番号ってどこに書いてある？",
    "{friend} ケトルバードのエアロ持ってなかったっけ？",
    "ケトルバードの件、公式の発表まだかな",
)

JA_CRISIS_POSITIVE = (
    "ケトルバードのサポート、DMしたらすぐ返信きた。対応早くて助かった",
    "うちのエアロは{age}使ってて大丈夫。ケトルバード好きだから早く原因わかるといいな",
    "ケトルバードの公式がすぐ発表してくれて安心した。ありがとう",
)

JA_CRISIS_BRAND = (
    "{friend} ご不便とご心配をおかけし申し訳ございません。"
    "エアロのご使用を中止し、DMにてご連絡ください。ケトルバード",
)

CRISIS_TEMPLATES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "en": {
        "report": EN_CRISIS_REPORTS,
        "reaction": EN_CRISIS_REACTIONS,
        "neutral": EN_CRISIS_NEUTRAL,
        "positive": EN_CRISIS_POSITIVE,
        "brand": EN_CRISIS_BRAND,
    },
    "ja": {
        "report": JA_CRISIS_REPORTS,
        "reaction": JA_CRISIS_REACTIONS,
        "neutral": JA_CRISIS_NEUTRAL,
        "positive": JA_CRISIS_POSITIVE,
        "brand": JA_CRISIS_BRAND,
    },
}
CRISIS_SLOTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "en": EN_CRISIS_SLOTS,
    "ja": JA_CRISIS_SLOTS,
}

CRISIS_NEGATIVE_SHARE = 0.68
"""Of the crisis posts, this share are reports or reactions; the rest are questions etc."""

CRISIS_STATEMENT_MINUTES = 98
"""The brand's accounts stay silent until their statement, this long after the onset."""


def crisis_mix(minutes: float) -> tuple[tuple[str, float], ...]:
    """What kind of post a crisis post is, ``minutes`` after the onset, with its probability."""
    reports = CRISIS_NEGATIVE_SHARE * (0.25 + 0.55 * math.exp(-minutes / 120))
    reactions = CRISIS_NEGATIVE_SHARE - reports
    brand = 0.03 if minutes >= CRISIS_STATEMENT_MINUTES else 0.0
    positive = 0.05
    neutral = 1 - CRISIS_NEGATIVE_SHARE - positive - brand
    return (
        ("report", reports),
        ("reaction", reactions),
        ("neutral", neutral),
        ("positive", positive),
        ("brand", brand),
    )


def crisis_shape(minutes: float) -> float:
    """The crisis's extra volume relative to its peak: 0 before the onset, 1 at the peak.

    A fast exponential rise times a slow exponential decay: about half the peak 15 minutes
    in, the peak after about 70 minutes, under a tenth of it after 12 hours.
    """
    if minutes < 0:
        return 0.0
    return _rise_and_decay(minutes) / _rise_and_decay(_PEAK_MINUTES)


def _rise_and_decay(minutes: float) -> float:
    rise = 1 - math.exp(-minutes / CRISIS_RISE_MINUTES)
    return rise * math.exp(-minutes / CRISIS_DECAY_MINUTES)


# Where the derivative of _rise_and_decay is zero.
_PEAK_MINUTES = CRISIS_RISE_MINUTES * math.log1p(CRISIS_DECAY_MINUTES / CRISIS_RISE_MINUTES)


# --- 4. People --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    handle: str
    followers: int
    verified: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "handle": self.handle,
            "followers": self.followers,
            "verified": self.verified,
        }


KETTLEBIRD = Account("2841560733", "kettlebird", 48_210, verified=True)
KETTLEBIRD_JP = Account("1093324861202210817", "kettlebird_jp", 21_540, verified=True)
BRAND_ACCOUNTS: Mapping[str, Account] = {"en": KETTLEBIRD, "ja": KETTLEBIRD_JP}

# The crisis's named cast, all invented.
FIRST_REPORTER = Account("1433902718820556801", "mariel_tinkers", 412)
FIRST_REPORTER_JA = Account("1290457713390247936", "hinata_ocha", 1_236)
SAFETY_DESK = Account("3310587452", "homesafe_watch", 184_300, verified=True)
TECH_JOURNALIST = Account("88412907", "priya_on_tech", 312_850, verified=True)
CHEF = Account("1162053398421504000", "chefdan_cooks", 58_900, verified=True)
KADEN_NEWS = Account("2209451876", "kaden_news_jp", 96_420, verified=True)
LIFESTYLE_JA = Account("1374420981562368001", "kurashi_no_mika", 143_700, verified=True)
NAMED_ACCOUNTS = (
    KETTLEBIRD,
    KETTLEBIRD_JP,
    FIRST_REPORTER,
    FIRST_REPORTER_JA,
    SAFETY_DESK,
    TECH_JOURNALIST,
    CHEF,
    KADEN_NEWS,
    LIFESTYLE_JA,
)

EN_FIRST_NAMES = (
    "sam", "maya", "jo", "dev", "priya", "tom", "lena", "marcus", "ava", "noah", "zoe", "eli",
    "ruth", "kai", "nina", "omar", "jess", "ben", "tess", "leo", "ivy", "raj", "hana", "cole",
    "dani", "finn", "gus", "mo", "amara", "theo", "bea", "cal", "dee", "rosa", "wes", "lou",
    "nat", "ash", "jules", "pip", "greta", "hugo", "iris", "jamal", "kofi", "lily", "mei",
)  # fmt: skip
EN_WORDS = (
    "tea", "brews", "kitchen", "cozy", "daily", "mornings", "loaf", "sips", "mugs", "steam",
    "plants", "books", "codes", "runs", "cats", "bakes", "notes", "home", "nerd", "vibes",
)  # fmt: skip
JA_GIVEN_NAMES = (
    "yuki", "haru", "mii", "sora", "aoi", "ren", "mei", "riku", "nana", "kaito", "hina",
    "sakura", "taku", "emi", "kenta", "ayaka", "shun", "momo", "rin", "yuto", "koharu", "mao",
)  # fmt: skip
JA_WORDS = (
    "cafe", "tea", "neko", "matcha", "ocha", "kurashi", "gohan", "life", "days", "room", "kaden",
    "nikki", "zakka", "hiyori", "pan",
)  # fmt: skip

POOL_SIZES: Mapping[str, int] = {"en": 6_000, "ja": 2_400}
MEDIAN_FOLLOWERS = 200
FOLLOWERS_SIGMA = 1.5  # log-normal spread: a few accounts have tens of thousands


class People:
    """The invented users who post, per language, some much more active than others."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"{seed}/people")
        taken = {a.handle for a in NAMED_ACCOUNTS}
        ids: set[str] = set()
        self._pools: dict[str, list[Account]] = {}
        self._cum_weights: dict[str, list[float]] = {}
        for lang, size in POOL_SIZES.items():
            pool: list[Account] = []
            cum: list[float] = []
            total = 0.0
            while len(pool) < size:
                handle = _handle(rng, lang)
                if handle in taken:
                    continue
                taken.add(handle)
                pool.append(_account(rng, handle, ids))
                total += min(rng.lognormvariate(0, 1.0), 25.0)  # how often this one posts
                cum.append(total)
            self._pools[lang] = pool
            self._cum_weights[lang] = cum

    def pick(self, rng: random.Random, lang: str) -> Account:
        return rng.choices(self._pools[lang], cum_weights=self._cum_weights[lang])[0]


@functools.lru_cache(maxsize=4)
def _people(seed: int) -> People:
    """The people for ``seed``, built once (they never change after construction)."""
    return People(seed)


def _handle(rng: random.Random, lang: str) -> str:
    if lang == "ja":
        name, word = rng.choice(JA_GIVEN_NAMES), rng.choice(JA_WORDS)
        patterns: tuple[str, ...] = (
            f"{name}_{word}",
            f"{word}_{name}{rng.randrange(1, 100)}",
            f"{name}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
            f"{name}_{rng.choice(JA_GIVEN_NAMES)}",
            f"{name}{word}",
        )
    else:
        name, word = rng.choice(EN_FIRST_NAMES), rng.choice(EN_WORDS)
        patterns = (
            f"{name}_{rng.choice('abcdefghjklmnprstw')}",
            f"{name}{rng.randrange(1, 1000)}",
            f"{name}_{word}",
            f"{word}with{name}",
            f"{name}{rng.choice('bcdfghkmnrstw')}{rng.randrange(10, 100)}",
            f"the{name}{word}",
        )
    return rng.choice(patterns)[:15].rstrip("_")


def _account(rng: random.Random, handle: str, taken_ids: set[str]) -> Account:
    while True:
        if rng.random() < 0.6:  # accounts since ~2016 have snowflake ids
            account_id = str(rng.randrange(700_000_000_000_000_000, 1_900_000_000_000_000_000))
        else:
            account_id = str(rng.randrange(10_000_000, 4_900_000_000))
        if account_id not in taken_ids:
            taken_ids.add(account_id)
            break
    followers = int(rng.lognormvariate(math.log(MEDIAN_FOLLOWERS), FOLLOWERS_SIGMA))
    verified = rng.random() < (0.3 if followers >= 20_000 else 0.003)
    return Account(account_id, handle, followers, verified)


# --- 5. Assembly ------------------------------------------------------------------------------

Post = dict[str, object]

_X_EPOCH_MS = 1_288_834_974_657
_BACKGROUND_WORKER = 1
_CRISIS_WORKER = 2
_SLOT = re.compile(r"\{(\w+)\}")
_LINK_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _post_id(ms: int, worker: int, seq: int) -> str:
    """A snowflake-style id: milliseconds, then which part of the stream, then a sequence."""
    return str(((ms - _X_EPOCH_MS) << 22) | (worker << 12) | (seq & 0xFFF))


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw by Knuth's method (fine for the tens per minute used here)."""
    limit = math.exp(-lam)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _pick(rng: random.Random, mix: Sequence[tuple[str, float]]) -> str:
    u = rng.random() * sum(p for _, p in mix)
    for kind, p in mix:
        u -= p
        if u < 0:
            return kind
    return mix[-1][0]


class Writer:
    """Turns templates into posts: fills slots, roughens the text, adds a brand term if needed."""

    def __init__(self, rng: random.Random, people: People) -> None:
        self._rng = rng
        self._people = people

    def text(self, template: str, lang: str, slots: Mapping[str, tuple[str, ...]]) -> str:
        text = _SLOT.sub(lambda m: self._slot(m.group(1), lang, slots), template)
        text = self._casual_en(text, slots) if lang == "en" else self._casual_ja(text, slots)
        return self._with_brand(text, lang)

    def reply_to_brand(self, text: str, lang: str) -> str:
        return text if text.startswith("@") else f"@{BRAND_ACCOUNTS[lang].handle} {text}"

    def _slot(self, name: str, lang: str, slots: Mapping[str, tuple[str, ...]]) -> str:
        if name == "friend":
            return "@" + self._people.pick(self._rng, lang).handle
        if name == "photo":
            return "https://t.co/" + "".join(self._rng.choices(_LINK_CHARS, k=10))
        return self._rng.choice(slots[name])

    def _casual_en(self, text: str, slots: Mapping[str, tuple[str, ...]]) -> str:
        rng = self._rng
        if rng.random() < 0.3 and text[:1].isupper() and not text[1:2].isupper():
            text = text[0].lower() + text[1:]  # but never "tIL" or "pSA"
        if rng.random() < 0.07:
            text = self._typo(text)
        if rng.random() < 0.15:
            text = f"{text} {rng.choice(slots['emoji'])}"
        if rng.random() < 0.08:
            text = f"{text} {rng.choice(slots['tag'])}"
        return text

    def _casual_ja(self, text: str, slots: Mapping[str, tuple[str, ...]]) -> str:
        rng = self._rng
        if rng.random() < 0.25:
            text = text + rng.choice(slots["tail"])
        if rng.random() < 0.07:
            text = f"{text} {rng.choice(slots['tag'])}"
        return text

    def _typo(self, text: str) -> str:
        """One slip of the finger in one ordinary word (never in a brand term or a handle)."""
        rng = self._rng
        words = text.split(" ")
        candidates = [
            i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5 and "kettlebird" not in w
        ]
        if not candidates:
            return text
        i = rng.choice(candidates)
        word = words[i]
        j = rng.randrange(1, len(word) - 1)
        kind = rng.randrange(3)
        if kind == 0:  # swapped letters
            word = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        elif kind == 1:  # a dropped letter
            word = word[:j] + word[j + 1 :]
        else:  # a doubled letter
            word = word[:j] + word[j] + word[j:]
        words[i] = word
        return " ".join(words)

    def _with_brand(self, text: str, lang: str) -> str:
        lowered = text.lower()
        if any(term.lower() in lowered for term in BRAND_TERMS):
            return text
        if lang == "ja":
            return self._rng.choice((f"{text} #ケトルバード", f"@kettlebird_jp {text}"))
        return self._rng.choice(
            (f"{text} #kettlebird", f"@kettlebird {text}", f"{text} #Kettlebird")
        )


def _metrics(rng: random.Random, followers: int, virality: float) -> dict[str, int]:
    """Engagement: mostly zeros and ones, large for large or viral accounts."""
    base = followers * 0.006 * virality * rng.lognormvariate(0, 1.1)
    return {
        "likes": int(base),
        "reposts": int(base * 0.12 * virality**0.5 * rng.lognormvariate(0, 0.8)),
        "replies": int(base * 0.08 * rng.lognormvariate(0, 0.8) + rng.random() * 1.3),
        "quotes": int(base * 0.02 * virality**0.5 * rng.lognormvariate(0, 1.0)),
    }


def _post(
    ms: int,
    worker: int,
    seq: int,
    lang: str,
    author: Account,
    text: str,
    metrics: Mapping[str, int],
) -> Post:
    post_id = _post_id(ms, worker, seq)
    created = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return {
        "id": post_id,
        "text": text,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lang": lang,
        "author": author.as_json(),
        "url": f"https://x.com/{author.handle}/status/{post_id}",
        "metrics": dict(metrics),
    }


def _minute_ms(minute: datetime) -> int:
    return int(minute.timestamp()) * 1000


def _background(
    seed: int, start: datetime, end: datetime, rhythm: Rhythm, people: People
) -> Iterator[Post]:
    """The everyday posts, minute by minute from the minute containing ``start``."""
    clock = random.Random(f"{seed}/background/times")  # when posts arrive
    rng = random.Random(f"{seed}/background/posts")  # what they say, who posts them
    writer = Writer(rng, people)
    start_ms, end_ms = _minute_ms(start) + start.microsecond // 1000, _minute_ms(end)
    minute = start.replace(second=0, microsecond=0)
    seq = 0
    while minute < end:
        arrivals: list[tuple[int, str]] = []
        for audience in AUDIENCES:
            expected = rhythm.rate(audience, minute + timedelta(seconds=30))
            arrivals += [
                (clock.randrange(60_000), audience.lang) for _ in range(_poisson(clock, expected))
            ]
        base_ms = _minute_ms(minute)
        for offset_ms, lang in sorted(arrivals):
            kind = _pick(rng, BACKGROUND_MIX)
            if kind == "brand":
                author = BRAND_ACCOUNTS[lang]
                text = writer.text(rng.choice(BRAND_TEMPLATES[lang]), lang, SLOTS[lang])
                virality = 0.1 if text.startswith("@") else 0.5
            else:
                author = people.pick(rng, lang)
                text = writer.text(rng.choice(BACKGROUND_TEMPLATES[lang][kind]), lang, SLOTS[lang])
                if kind != "positive" and rng.random() < 0.06:
                    text = writer.reply_to_brand(text, lang)
                virality = 1.0
            metrics = _metrics(rng, author.followers, virality)
            seq += 1
            ms = base_ms + offset_ms
            if start_ms <= ms < end_ms:
                yield _post(ms, _BACKGROUND_WORKER, seq, lang, author, text, metrics)
        minute += timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class ScriptedPost:
    """A crisis post written out in full, at a fixed time after the onset."""

    after: timedelta
    author: Account
    lang: str
    text: str
    likes: int
    reposts: int
    replies: int
    quotes: int


def _after(minutes: int, seconds: int = 0) -> timedelta:
    return timedelta(minutes=minutes, seconds=seconds)


SCRIPTED_CRISIS_POSTS = (
    ScriptedPost(
        _after(0, 12), FIRST_REPORTER, "en",
        "uh. my kettlebird aero just started smoking from the base?? unplugged it. "
        "has anyone else had this, it's scary",
        14, 3, 6, 0,
    ),
    ScriptedPost(
        _after(3, 41), FIRST_REPORTER, "en",
        "update: the base of the Kettlebird Aero is scorched and the plastic underneath is melted. "
        "8 months old. @kettlebird what is going on https://t.co/q8VmK2sLd0",
        96, 41, 22, 5,
    ),
    ScriptedPost(
        _after(1, 50), FIRST_REPORTER_JA, "ja",
        "ケトルバードのエアロ、底から煙が出てきた…焦げ臭い。怖い",
        58, 19, 7, 2,
    ),
    ScriptedPost(
        _after(26, 30), SAFETY_DESK, "en",
        "We're getting multiple reports of Kettlebird Aero kettles overheating at the base, with "
        "smoke, melting and at least one burn. If you own one, unplug it and stop using it until "
        "@kettlebird responds. Send us photos.",
        4_820, 2_960, 412, 318,
    ),
    ScriptedPost(
        _after(44, 8), TECH_JOURNALIST, "en",
        "Dozens of reports this morning of the Kettlebird Aero overheating: melted bases, lids "
        "popping open, several burns. I've asked @kettlebird for comment. Thread 🧵",
        9_310, 4_870, 1_026, 655,
    ),
    ScriptedPost(
        _after(61, 47), KADEN_NEWS, "ja",
        "【注意】ケトルバード「エアロ」で底面の焦げ・発煙の報告が相次ぐ。火傷の報告も。"
        "利用者は使用を中止し電源プラグを抜くよう呼びかけ #ケトルバード",
        3_140, 2_210, 188, 240,
    ),
    ScriptedPost(
        _after(79, 20), CHEF, "en",
        "Pulled the Kettlebird Aero out of the test kitchen. Base was far too hot and smelled of "
        "burning plastic. Not worth the risk, please stop using it.",
        2_560, 1_130, 204, 97,
    ),
    ScriptedPost(
        _after(CRISIS_STATEMENT_MINUTES, 0), KETTLEBIRD, "en",
        "We're aware of reports of the Kettlebird Aero overheating. Your safety comes first: "
        "please unplug your Aero and stop using it while we investigate. We'll update here "
        "within 24 hours. ~Team Kettlebird",
        1_480, 2_390, 3_870, 1_260,
    ),
    ScriptedPost(
        _after(CRISIS_STATEMENT_MINUTES + 14, 30), KETTLEBIRD_JP, "ja",
        "ケトルバード エアロの過熱に関するご報告を確認しております。安全のため、ご使用を中止し"
        "電源プラグを抜いてください。詳細は改めてお知らせいたします。",
        820, 1_540, 1_210, 470,
    ),
    ScriptedPost(
        _after(131, 2), LIFESTYLE_JA, "ja",
        "うちのケトルバードも念のため使用中止しました。皆さんも火傷に気をつけて。"
        "サポートが繋がらないみたいなので、まずは電源を抜いてください",
        5_670, 1_890, 233, 121,
    ),
    ScriptedPost(
        _after(192, 15), TECH_JOURNALIST, "en",
        "Update: Kettlebird says it is investigating the Aero overheating reports and asks "
        "owners to stop using it. No recall announced yet. Customer support lines appear "
        "overwhelmed.",
        6_020, 3_340, 712, 402,
    ),
    ScriptedPost(
        _after(335, 40), SAFETY_DESK, "en",
        "Still no recall notice for the Kettlebird Aero. Keep it unplugged. We've now received "
        "200+ reports of overheating bases and 11 of burns or scalds.",
        3_910, 2_480, 377, 260,
    ),
)  # fmt: skip


def _crisis(
    seed: int, start: datetime, end: datetime, rhythm: Rhythm, people: People
) -> Iterator[Post]:
    """The crisis's extra posts, minute by minute from the onset (whatever the window)."""
    clock = random.Random(f"{seed}/crisis/times")  # when posts arrive, and in which language
    rng = random.Random(f"{seed}/crisis/posts")  # what they say, who posts them
    writer = Writer(rng, people)
    start_ms, end_ms = _minute_ms(start) + start.microsecond // 1000, _minute_ms(end)
    scripted: dict[int, list[ScriptedPost]] = {}
    for s in SCRIPTED_CRISIS_POSTS:
        scripted.setdefault(int(s.after.total_seconds()) // 60, []).append(s)
    en, ja = AUDIENCES
    seq = 0
    for i in range(CRISIS_HOURS * 60):
        minute = CRISIS_ONSET + timedelta(minutes=i)
        mid = minute + timedelta(seconds=30)
        ja_share = rhythm.rate(ja, mid) / (rhythm.rate(en, mid) + rhythm.rate(ja, mid))
        count = _poisson(clock, CRISIS_PEAK_RATE * crisis_shape(i + 0.5))
        arrivals: list[tuple[int, str, ScriptedPost | None]] = [
            (clock.randrange(60_000), "ja" if clock.random() < ja_share else "en", None)
            for _ in range(count)
        ]
        arrivals += [
            (int(s.after.total_seconds() * 1000) % 60_000, s.lang, s) for s in scripted.get(i, [])
        ]
        base_ms = _minute_ms(minute)
        for offset_ms, lang, script in sorted(arrivals, key=lambda a: (a[0], a[1])):
            if script is not None:
                author, text = script.author, script.text
                metrics = {
                    "likes": script.likes,
                    "reposts": script.reposts,
                    "replies": script.replies,
                    "quotes": script.quotes,
                }
            else:
                kind = _pick(rng, crisis_mix(i + offset_ms / 60_000))
                author = BRAND_ACCOUNTS[lang] if kind == "brand" else people.pick(rng, lang)
                template = rng.choice(CRISIS_TEMPLATES[lang][kind])
                text = writer.text(template, lang, CRISIS_SLOTS[lang])
                if kind in ("report", "reaction") and rng.random() < 0.1:
                    text = writer.reply_to_brand(text, lang)
                virality = 0.2 if kind == "brand" else 3.0
                metrics = _metrics(rng, author.followers, virality)
            seq += 1
            ms = base_ms + offset_ms
            if start_ms <= ms < end_ms:
                yield _post(ms, _CRISIS_WORKER, seq, lang, author, text, metrics)


def generate(
    seed: int = DEFAULT_SEED,
    *,
    crisis: bool = True,
    start: datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
) -> Iterator[Post]:
    """The demo stream's posts from ``start`` for ``days`` days, oldest first.

    The same arguments always give the same posts.  The background does not depend on
    ``crisis``, so the calm stream is the crisis stream minus its crisis posts; a shorter
    window gives a prefix of a longer one.  Crisis posts appear only if the window covers
    some of the ``CRISIS_HOURS`` after ``CRISIS_ONSET``.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start = start.astimezone(UTC)
    end = start + timedelta(days=days)
    rhythm = Rhythm(seed)
    people = _people(seed)
    streams = [_background(seed, start, end, rhythm, people)]
    if crisis:
        streams.append(_crisis(seed, start, end, rhythm, people))
    # Ids start with the millisecond of the post, so merging by id keeps time order.
    return heapq.merge(*streams, key=_id_order)


def _id_order(post: Post) -> int:
    return int(str(post["id"]))


# --- 6. Writing the file, and the command line ------------------------------------------------


class GenerateOptions(TypedDict, total=False):
    """The keyword arguments of ``generate``, for ``write``."""

    seed: int
    crisis: bool
    start: datetime
    days: int


def write(path: Path, **generate_kwargs: Unpack[GenerateOptions]) -> int:
    """Write ``generate(**generate_kwargs)`` to ``path`` as gzip'd JSON lines; return the count.

    The gzip header carries no file name and a zero time stamp, so the bytes depend only on
    the posts.
    """
    posts = generate(**generate_kwargs)
    count = 0
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for post in posts:
            line = json.dumps(post, ensure_ascii=False, separators=(",", ":"))
            gz.write(line.encode("utf-8") + b"\n")
            count += 1
    return count


def bundled_demo_path() -> Path:
    """Where the bundled demo stream (``demo.jsonl.gz``) is installed."""
    return Path(str(resources.files("xwatch.demo") / "demo.jsonl.gz"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xwatch.demo.generate",
        description=(
            "Write the demo stream: a week of invented posts about the fictional kettle brand "
            "Kettlebird (English and Japanese), with a product-defect crisis starting "
            f"{CRISIS_ONSET:%a %Y-%m-%d %H:%M} UTC.  The output is gzip'd JSON lines and is the "
            "same, byte for byte, for the same options."
        ),
        epilog="Rebuild the bundled file with: python -m xwatch.demo.generate "
        "--out xwatch/demo/demo.jsonl.gz",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="PATH", help="file to write (.jsonl.gz)"
    )
    parser.add_argument(
        "--calm", action="store_true", help="leave the crisis out (the background is unchanged)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        metavar="N",
        help="random seed (default: %(default)s)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        metavar="N",
        help=f"days from {DEFAULT_START:%Y-%m-%d} (a Monday) to cover (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: write the stream to ``--out`` and say how many posts it has."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    out: Path = args.out
    count = write(out, seed=args.seed, crisis=not args.calm, days=args.days)
    print(f"wrote {count} posts to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
