"""Turn layouts: how a (system prompt, user turn) pair becomes the text a model continues.

Every stage that shows a model a user turn outside the principle-driven generation prompt
(training data, curriculum scoring, validation, probes, the local judge, evaluation) goes
through `Layout`, so a model is trained, probed and scored in one layout.

- `chat`: the tokenizer's own chat template (instruct models).
- `plain`: a text layout for pretrained models, which have no chat template. Its default
  follows Dromedary's plain-text training layout in our reading (system prompt, the user
  turn, an answer marker, the answer); every string is config (`base_model.plain_layout`).
- `auto`: `chat` when the tokenizer has a chat template, else `plain`.
"""

from __future__ import annotations

from dataclasses import dataclass

from soft.errors import SoftError

TEMPLATES = ("auto", "chat", "plain")
LAYOUT_KINDS = ("chat", "plain")


@dataclass(frozen=True)
class PlainLayout:
    """The strings of the plain layout: `system + system_suffix + user_prefix + user +
    answer_prefix`, then the answer. The defaults give

        {system prompt}

        ### User
        {user turn}

        ### Assistant
        {answer}
    """

    system_suffix: str = "\n\n"
    user_prefix: str = "### User\n"
    answer_prefix: str = "\n\n### Assistant\n"

    @classmethod
    def from_config(cls, cfg: dict | None) -> "PlainLayout":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise SoftError(f"config key 'base_model.plain_layout': unknown key(s) {', '.join(unknown)}")
        return cls(**cfg)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_kind(tokenizer, template: str, where: str = "the model") -> str:
    """`chat` or `plain` for this tokenizer under config `base_model.template`."""
    if template not in TEMPLATES:
        raise SoftError(f"config key 'base_model.template': '{template}' is not one of {', '.join(TEMPLATES)}")
    if template == "auto":
        return "chat" if has_chat_template(tokenizer) else "plain"
    if template == "chat" and not has_chat_template(tokenizer):
        raise SoftError(f"{where}: base_model.template is 'chat' but the tokenizer has no chat template; "
                        f"set base_model.template: plain (or auto)")
    return template


@dataclass(frozen=True)
class Layout:
    """One resolved layout. `prompt_text` is everything before the answer's first token;
    the answer follows it directly (training completion, scored span, generated text)."""

    kind: str
    plain: PlainLayout = PlainLayout()

    @classmethod
    def for_tokenizer(cls, tokenizer, template: str = "auto", plain_cfg: dict | None = None,
                      where: str = "the model") -> "Layout":
        return cls(resolve_kind(tokenizer, template, where), PlainLayout.from_config(plain_cfg))

    @classmethod
    def from_settings(cls, tokenizer, settings: dict | None, where: str = "the model") -> "Layout":
        """The layout for this tokenizer under `layout_settings(config)` (None = auto with
        the default plain strings): what every stage's job receives as a param."""
        settings = settings or {}
        return cls.for_tokenizer(tokenizer, settings.get("template", "auto"), settings.get("plain_layout"), where)

    @property
    def add_special_tokens(self) -> bool:
        """Whether the tokenizer adds its own special tokens (a Llama's BOS) when encoding
        a prompt_text: the chat template writes its own, the plain layout has none. TRL
        encodes plain prompt/completion strings with them, so every stage does the same."""
        return self.kind == "plain"

    def prompt_text(self, tokenizer, system: str | None, user: str) -> str:
        if self.kind == "chat":
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        head = f"{system}{self.plain.system_suffix}" if system else ""
        return f"{head}{self.plain.user_prefix}{user}{self.plain.answer_prefix}"

    def user_span(self, tokenizer, system: str | None, user: str) -> tuple[str, str]:
        """(text before the user turn, the user turn): to score the prompt itself, in
        the layout, as the curriculum does."""
        text = self.prompt_text(tokenizer, system, user)
        start = text.rindex(user)
        return text[:start], user

    def answer_suffix(self, tokenizer) -> str:
        """What ends an answer in this layout (the end-of-turn token the model must learn
        to write): the tokenizer's eos for both kinds."""
        return tokenizer.eos_token or ""

    def messages_text(self, tokenizer, messages: list[dict]) -> str:
        """prompt_text for a message list of an optional system message and one user
        message (what lm-eval hands to `apply_chat_template` for a zero-shot request)."""
        roles = [m.get("role") for m in messages]
        if roles not in (["user"], ["system", "user"]):
            raise SoftError(f"layout {self.kind}: expected an optional system message and one user message, "
                            f"got roles {roles}")
        system = messages[0]["content"] if roles[0] == "system" else None
        return self.prompt_text(tokenizer, system, messages[-1]["content"])

    def describe(self) -> dict:
        out = {"kind": self.kind}
        if self.kind == "plain":
            out["plain"] = {k: getattr(self.plain, k) for k in PlainLayout.__dataclass_fields__}
        return out


def layout_settings(base_model_cfg: dict | None) -> dict:
    """`base_model.template` and `base_model.plain_layout` of a config, checked (the
    strings' keys, the template's value) so a bad value fails at DAG build: the settings
    every stage resolves its model's layout from."""
    cfg = base_model_cfg or {}
    template = cfg.get("template", "auto")
    if template not in TEMPLATES:
        raise SoftError(f"config key 'base_model.template': '{template}' is not one of {', '.join(TEMPLATES)}")
    plain = PlainLayout.from_config(cfg.get("plain_layout"))
    return {"template": template, "plain_layout": {k: getattr(plain, k) for k in PlainLayout.__dataclass_fields__}}
