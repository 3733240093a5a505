"""Personas (who answers, and how) and the phone numbers that route calls to them."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator, URLValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from agents.keys import not_a_server_secret
from agents.tool_schema import (
    BUILT_IN_TOOL_NAMES,
    empty_object_schema,
    tool_name_validator,
    validate_arguments_schema,
)
from voiceproject.models import TimestampedModel

bcp47_validator = RegexValidator(
    r"^(multi|[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*)$",
    "Use a BCP-47 language tag such as en-US, es-MX or multi.",
)
env_var_name_validator = RegexValidator(
    r"^[A-Z_][A-Z0-9_]*$",
    "Use the name of an environment variable, such as TOGETHER_API_KEY: capitals, digits and underscores. Never the key itself.",
)
e164_validator = RegexValidator(
    r"^\+[1-9]\d{1,14}$", "Use the E.164 format: a plus sign and digits, e.g. +14155550100."
)

DEFAULT_FALLBACK_LINE = "Sorry, I'm having a little trouble right now. Could you say that again?"
DEFAULT_FIRST_TOKEN_TIMEOUT = 8.0  # seconds; a tool-using reply's first token can take a while
DEFAULT_TOKEN_GAP_TIMEOUT = 5.0  # seconds; streaming models send tokens many times a second
DEFAULT_TOOL_FILLER_LINE = "One moment, please."
DEFAULT_TOOL_FILLER_AFTER = 1.5  # seconds: a pause this long already sounds like a dropped call


class PersonaQuerySet(models.QuerySet["Persona"]):
    def default(self) -> Persona:
        return self.get(is_default=True)

    def for_number(self, number: str) -> Persona:
        """The persona answering calls to `number`: its routed persona, else the default."""
        routed = (
            PhoneNumber.objects.filter(number=number, persona__is_active=True)
            .select_related("persona")
            .first()
        )
        return routed.persona if routed else self.default()

    @transaction.atomic
    def make_default(self, persona: Persona) -> None:
        from agents import directory

        self.filter(is_default=True).exclude(pk=persona.pk).update(is_default=False)
        self.filter(pk=persona.pk).update(is_default=True, is_active=True)
        directory.forget()  # update() sends no save signal


class Persona(TimestampedModel):
    """An AI agent's identity: what it knows, how it sounds and which model speaks for it."""

    class Interruptible(models.TextChoices):
        ANY = "any", "Speech or keypad"
        SPEECH = "speech", "Speech only"
        DTMF = "dtmf", "Keypad only"
        NONE = "none", "Never"

    class TtsProvider(models.TextChoices):
        ELEVENLABS = "ElevenLabs", "ElevenLabs"
        GOOGLE = "Google", "Google"
        AMAZON = "Amazon", "Amazon"

    class TranscriptionProvider(models.TextChoices):
        DEEPGRAM = "Deepgram", "Deepgram"
        GOOGLE = "Google", "Google"

    class Chunking(models.TextChoices):
        TOKEN = "token", "Token by token"
        PHRASE = "phrase", "Phrases and sentences"

    class Transport(models.TextChoices):
        RELAY = "relay", "ConversationRelay (Twilio does speech)"
        MEDIA = "media", "Media Streams (raw audio, our speech providers)"

    class SttProvider(models.TextChoices):
        TOGETHER = "together", "Together (Whisper, realtime)"
        DEEPGRAM = "deepgram", "Deepgram (live streaming)"
        DEMO = "demo", "Offline demo"

    class StreamTtsProvider(models.TextChoices):
        TOGETHER = "together", "Together (Kokoro, realtime)"
        CARTESIA = "cartesia", "Cartesia (websocket)"
        DEMO = "demo", "Offline demo"

    class LlmProvider(models.TextChoices):
        ANTHROPIC = "anthropic", "Anthropic Claude"
        OPENAI = "openai", "OpenAI-compatible"
        DEMO = "demo", "Offline demo model"
        AGENT = "agent", "Your agent (client-side)"

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True, help_text="Inactive personas take no calls.")
    is_default = models.BooleanField(
        default=False,
        help_text="Answers calls to numbers that are not routed to a persona. Exactly one persona is the default.",
    )

    system_prompt = models.TextField(
        help_text="Written for the ear: short sentences, no lists or markdown, numbers in words."
    )
    welcome_greeting = models.TextField(
        blank=True,
        help_text="Spoken as soon as the call connects. Leave empty to let the caller speak first.",
    )
    fallback_line = models.TextField(
        default=DEFAULT_FALLBACK_LINE, help_text="Spoken when the model fails or stalls mid-call."
    )
    # A stalled model is given up on by inactivity (calls/engine/stalls.py); the whole reply is
    # also capped by RELAY_REPLY_TIMEOUT_SECONDS.
    first_token_timeout_seconds = models.FloatField(
        "first-token timeout",
        default=DEFAULT_FIRST_TOKEN_TIMEOUT,
        validators=[MinValueValidator(0.5), MaxValueValidator(60.0)],
        help_text="Seconds from the request to the model's first words or tool call before the agent "
        "gives up and says the fallback line. A reply that starts with a tool call can be slow to begin.",
    )
    token_gap_timeout_seconds = models.FloatField(
        "token gap timeout",
        default=DEFAULT_TOKEN_GAP_TIMEOUT,
        validators=[MinValueValidator(0.5), MaxValueValidator(60.0)],
        help_text="Seconds without a new token, once the reply has begun, before the agent ends what it "
        "was saying and says the fallback line.",
    )

    language = models.CharField(max_length=35, default="en-US", validators=[bcp47_validator])
    voice = models.CharField(
        max_length=100, blank=True, help_text="Provider voice id; empty uses the provider's default."
    )
    tts_provider = models.CharField(
        "text-to-speech provider", max_length=20, choices=TtsProvider, default=TtsProvider.ELEVENLABS
    )
    transcription_provider = models.CharField(
        max_length=20, choices=TranscriptionProvider, default=TranscriptionProvider.DEEPGRAM
    )
    interruptible = models.CharField(
        max_length=10,
        choices=Interruptible,
        default=Interruptible.ANY,
        help_text="What lets the caller cut the agent off.",
    )

    llm_provider = models.CharField(
        "model provider", max_length=20, choices=LlmProvider, default=LlmProvider.ANTHROPIC
    )
    llm_model = models.CharField("model", max_length=100, default="claude-haiku-4-5")
    llm_base_url = models.URLField(
        "model base URL",
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Empty uses the provider's default. OpenAI-compatible servers include the /v1 path, "
        "e.g. http://localhost:11434/v1 for Ollama.",
    )
    llm_api_key_env = models.CharField(
        "API key variable",
        max_length=100,
        blank=True,
        validators=[env_var_name_validator, not_a_server_secret],
        help_text="The NAME of the environment variable holding the API key (e.g. TOGETHER_API_KEY), never "
        "the key itself. Empty uses ANTHROPIC_API_KEY or OPENAI_API_KEY.",
    )
    temperature = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="For models that take a sampling temperature. Claude's current API does not, so it is not sent there.",
    )
    max_tokens = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(16), MaxValueValidator(8192)],
        help_text="Longest reply in tokens. Phone replies should be short.",
    )

    # --- Transport ---
    transport = models.CharField(
        max_length=10,
        choices=Transport,
        default=Transport.RELAY,
        help_text="ConversationRelay: Twilio transcribes and speaks. Media Streams: Twilio sends raw audio; "
        "Switchboard detects speech, transcribes and speaks with the providers below.",
    )

    # --- Media Streams: speech providers and voice activity detection ---
    stt_provider = models.CharField(
        "speech-to-text provider", max_length=20, choices=SttProvider, default=SttProvider.TOGETHER
    )
    stt_model = models.CharField(
        "speech-to-text model", max_length=100, blank=True, help_text="Empty uses the provider's default."
    )
    stt_base_url = models.CharField(
        "speech-to-text URL",
        max_length=200,
        blank=True,
        help_text="The provider's websocket URL (wss://...). Empty uses the provider's own.",
    )
    stt_api_key_env = models.CharField(
        "speech-to-text key variable",
        max_length=100,
        blank=True,
        validators=[env_var_name_validator, not_a_server_secret],
        help_text="The NAME of the environment variable holding the key. Empty uses TOGETHER_API_KEY or "
        "DEEPGRAM_API_KEY. Without a key the offline demo transcriber answers.",
    )
    stream_tts_provider = models.CharField(
        "Media Streams text-to-speech provider",
        max_length=20,
        choices=StreamTtsProvider,
        default=StreamTtsProvider.TOGETHER,
    )
    stream_tts_model = models.CharField(
        "text-to-speech model", max_length=100, blank=True, help_text="Empty uses the provider's default."
    )
    stream_voice = models.CharField(
        "text-to-speech voice", max_length=100, blank=True, help_text="Empty uses the provider's default."
    )
    stream_tts_base_url = models.CharField(
        "text-to-speech URL",
        max_length=200,
        blank=True,
        help_text="The provider's websocket URL (wss://...). Empty uses the provider's own.",
    )
    stream_tts_api_key_env = models.CharField(
        "text-to-speech key variable",
        max_length=100,
        blank=True,
        validators=[env_var_name_validator, not_a_server_secret],
        help_text="The NAME of the environment variable holding the key. Empty uses TOGETHER_API_KEY or "
        "CARTESIA_API_KEY. Without a key the offline demo voice speaks.",
    )
    vad_start_threshold = models.FloatField(
        "speech starts above",
        default=0.6,
        validators=[MinValueValidator(0.05), MaxValueValidator(0.99)],
        help_text="Silero VAD probability at which the caller starts speaking.",
    )
    vad_end_threshold = models.FloatField(
        "speech ends below",
        default=0.35,
        validators=[MinValueValidator(0.01), MaxValueValidator(0.95)],
        help_text="Probability below which the caller has stopped speaking.",
    )
    vad_min_speech_ms = models.PositiveIntegerField(
        "shortest turn (ms)",
        default=500,
        validators=[MinValueValidator(32), MaxValueValidator(5000)],
        help_text="Speech shorter than this is not a turn (a cough, a click).",
    )
    vad_silence_ms = models.PositiveIntegerField(
        "end-of-turn silence (ms)",
        default=500,
        validators=[MinValueValidator(96), MaxValueValidator(5000)],
        help_text="Silence after speech that ends the caller's turn.",
    )
    vad_barge_in_threshold = models.FloatField(
        "barge-in above",
        default=0.85,
        validators=[MinValueValidator(0.05), MaxValueValidator(0.99)],
        help_text="Probability that counts as talking over the agent.",
    )
    vad_barge_in_windows = models.PositiveSmallIntegerField(
        "barge-in windows",
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(30)],
        help_text="Consecutive 32 ms windows above the barge-in probability that stop the agent.",
    )

    # --- How replies become speech ---
    speech_chunking = models.CharField(
        max_length=10,
        choices=Chunking,
        default=Chunking.TOKEN,
        help_text="Token: forward each token at once (fastest first word). Phrase: send word groups and "
        "sentences, with a small first chunk.",
    )
    allow_ssml = models.BooleanField(
        "allow SSML", default=False, help_text="Pass <tags> through to the voice; otherwise they are escaped."
    )

    # --- Call control ---
    end_call_enabled = models.BooleanField(
        "may end the call",
        default=True,
        help_text="The model may hang up after saying goodbye (end_call tool).",
    )
    end_call_marker = models.CharField(
        max_length=40,
        blank=True,
        help_text="For models without tools: a marker such as [END_CALL] in a reply ends the call. "
        "It is never spoken. Empty: off.",
    )
    transfer_enabled = models.BooleanField(
        "may transfer to a human",
        default=False,
        help_text="The model may hand the call to the handoff number.",
    )
    handoff_number = models.CharField(
        max_length=16,
        blank=True,
        validators=[e164_validator],
        help_text="Where transfers are dialled (E.164).",
    )
    dtmf_enabled = models.BooleanField(
        "keypad input",
        default=False,
        help_text="Collect keypad digits into numbers and give them to the model.",
    )
    dtmf_pause_seconds = models.FloatField(
        "keypad pause",
        default=3.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(30.0)],
        help_text="Seconds without a key that submit the digits typed so far (# submits at once).",
    )
    idle_timeout_seconds = models.PositiveIntegerField(
        "idle timeout",
        null=True,
        blank=True,
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Seconds of caller silence after the agent finishes speaking before it checks in. Empty: never.",
    )
    idle_max_reprompts = models.PositiveSmallIntegerField(
        default=2, help_text="Check-ins before the agent ends a silent call."
    )
    idle_reprompt_line = models.TextField(default="Are you still there?")
    idle_goodbye_line = models.TextField(default="I can't hear anything, so I'll end the call now. Goodbye.")
    max_call_seconds = models.PositiveIntegerField(
        "maximum call duration",
        null=True,
        blank=True,
        default=900,
        validators=[MinValueValidator(10)],
        help_text="Seconds; then the agent says the closing line and ends the call. Empty: no limit.",
    )
    max_call_line = models.TextField(
        "closing line", default="We're out of time for this call. Thank you for calling, goodbye."
    )

    # --- HTTP tools (PersonaTool) ---
    tool_filler_line = models.CharField(
        "tool filler line",
        max_length=200,
        blank=True,
        default=DEFAULT_TOOL_FILLER_LINE,
        help_text="Said while a tool is still running and the agent is silent, so the caller never hears "
        "dead air. Empty: silence.",
    )
    tool_filler_after_seconds = models.FloatField(
        "filler after",
        default=DEFAULT_TOOL_FILLER_AFTER,
        validators=[MinValueValidator(0.2), MaxValueValidator(10.0)],
        help_text="Seconds a tool may run, once the agent has stopped speaking, before the filler line.",
    )

    summary_prompt = models.TextField(
        blank=True, help_text="How to summarise a finished call. Empty uses the built-in prompt."
    )

    objects = PersonaQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="agents_persona_single_default",
                violation_error_message="Another persona is already the default.",
            ),
            # Zero would cut off every reply at once.
            models.CheckConstraint(
                condition=Q(first_token_timeout_seconds__gt=0, token_gap_timeout_seconds__gt=0),
                name="agents_persona_stall_timeouts_positive",
                violation_error_message="Stall timeouts must be more than zero seconds.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        others = Persona.objects.exclude(pk=self.pk)
        if self.is_default and others.filter(is_default=True).exists():
            raise ValidationError(
                {"is_default": "Another persona is the default. Use the “Make default” action to switch."}
            )
        was_default = self.pk and Persona.objects.filter(pk=self.pk, is_default=True).exists()
        if was_default and not self.is_default:
            raise ValidationError(
                {"is_default": "One persona must stay the default. Make another persona the default instead."}
            )
        if self.is_default and not self.is_active:
            raise ValidationError({"is_active": "The default persona must stay active."})
        if self.vad_end_threshold >= self.vad_start_threshold:
            raise ValidationError(
                {"vad_end_threshold": "Speech must end below the probability at which it starts."}
            )
        if self.transfer_enabled and not self.handoff_number:
            raise ValidationError(
                {
                    "handoff_number": "Transfers need a number to dial. Enter the handoff number, "
                    "or untick “may transfer to a human”."
                }
            )


class PhoneNumber(TimestampedModel):
    """A Twilio number and the persona that answers it (calls are routed by their `To`)."""

    number = models.CharField(max_length=16, unique=True, validators=[e164_validator])
    persona = models.ForeignKey(Persona, on_delete=models.PROTECT, related_name="phone_numbers")
    label = models.CharField(max_length=100, blank=True, help_text="e.g. Main line, After hours")

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} ({self.label})" if self.label else self.number


class PersonaLanguage(models.Model):
    """A language the persona may switch to mid-call (a `<Language>` element in the TwiML)."""

    persona = models.ForeignKey(Persona, on_delete=models.CASCADE, related_name="languages")
    code = models.CharField(max_length=35, validators=[bcp47_validator], help_text="e.g. es-MX")
    voice = models.CharField(max_length=100, blank=True)
    tts_provider = models.CharField(
        "text-to-speech provider", max_length=20, choices=Persona.TtsProvider, blank=True
    )
    transcription_provider = models.CharField(
        max_length=20, choices=Persona.TranscriptionProvider, blank=True
    )
    speech_model = models.CharField(max_length=50, blank=True)

    class Meta:
        ordering = ["persona", "code"]
        constraints = [
            models.UniqueConstraint(fields=["persona", "code"], name="agents_personalanguage_unique_code"),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        # The persona's own language is always declared (calls/webhooks/twiml.py): listing it twice would
        # give it two voices.
        persona = getattr(self, "persona", None)  # unset on a form that is still being filled
        if persona is not None and self.code.lower() == persona.language.lower():
            raise ValidationError(
                {"code": f"{self.code} is the persona's own language already; list only other languages."}
            )


class PersonaTool(TimestampedModel):
    """An HTTP endpoint the persona's model may call mid-call (calls/engine/http_tools.py runs it)."""

    class Method(models.TextChoices):
        GET = "GET", "GET (arguments in the query string)"
        POST = "POST", "POST (arguments as a JSON body)"

    persona = models.ForeignKey(Persona, on_delete=models.CASCADE, related_name="http_tools")
    name = models.CharField(
        max_length=64,
        validators=[tool_name_validator],
        help_text="What the model calls it, e.g. check_order. Not end_call, transfer_to_human or switch_language.",
    )
    description = models.TextField(help_text="Tells the model when to call it and what it returns.")
    parameters = models.JSONField(
        "arguments schema",
        default=empty_object_schema,
        validators=[validate_arguments_schema],
        help_text='A JSON Schema of an object, e.g. {"type": "object", "properties": {"order": '
        '{"type": "string"}}, "required": ["order"]}.',
    )
    url = models.URLField("URL", max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    method = models.CharField(max_length=4, choices=Method, default=Method.POST)
    timeout_seconds = models.FloatField(
        "timeout",
        default=5.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(30.0)],
        help_text="Seconds before the call is given up and the model told it timed out.",
    )
    auth_header_env = models.CharField(
        "Authorization variable",
        max_length=100,
        blank=True,
        validators=[env_var_name_validator, not_a_server_secret],
        help_text="The NAME of the environment variable whose value is sent as the Authorization header "
        "(e.g. ORDERS_API_AUTH holding 'Bearer …'), never the value itself. Empty: no header.",
    )
    cancellable = models.BooleanField(
        default=True,
        help_text="Cancelled when the caller interrupts. Untick for tools that change something (a "
        "booking): they run to completion and are recorded.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["persona", "name"]
        verbose_name = "HTTP tool"
        constraints = [
            models.UniqueConstraint(
                fields=["persona", "name"],
                name="agents_persontool_unique_name",
                violation_error_message="The persona has a tool of this name already.",
            ),
            models.CheckConstraint(
                condition=~Q(name__in=sorted(BUILT_IN_TOOL_NAMES)),
                name="agents_persontool_not_built_in",
                violation_error_message="That name is one of the built-in tools'.",
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=0.5, timeout_seconds__lte=30.0),
                name="agents_persontool_timeout_bounded",
                violation_error_message="The timeout must be between 0.5 and 30 seconds.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


AGENT_KEY_MARKER = "sbk_"  # makes a leaked key recognisable (secret scanners, logs)
AGENT_KEY_PREFIX_LENGTH = len(AGENT_KEY_MARKER) + 6  # shown in the admin; 36 of the key's 256 bits


def agent_key_digest(key: str) -> str:
    """SHA-256 of a key: keys are 256 random bits, so a slow password hash would add nothing."""
    return hashlib.sha256(key.encode()).hexdigest()


class AgentKeyQuerySet(models.QuerySet["AgentKey"]):
    def issue(self, name: str, created_by: Any = None) -> tuple[AgentKey, str]:
        """A new key and its one and only plain-text copy (only the digest is stored)."""
        agent_key = self.model(name=name, created_by=created_by)
        key = agent_key.set_new_key()
        agent_key.save(force_insert=True)
        return agent_key, key

    def authenticate(self, key: str) -> AgentKey | None:
        """The live (unrevoked) key matching `key`, else None."""
        if not key.startswith(AGENT_KEY_MARKER):
            return None
        return self.filter(key_hash=agent_key_digest(key), revoked_at__isnull=True).first()

    def revoke(self) -> int:
        return self.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


class AgentKey(models.Model):
    """An API key for an agent process on the agent socket (sdk/PROTOCOL.md); only its hash is kept."""

    name = models.CharField(max_length=100, help_text="Which agent or team uses it, e.g. langchain-prod.")
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The key's first characters, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AgentKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "agent key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def set_new_key(self) -> str:
        """Give this (unsaved) row a fresh key; returns the key, which is not kept anywhere."""
        key = AGENT_KEY_MARKER + secrets.token_urlsafe(32)
        self.prefix = key[:AGENT_KEY_PREFIX_LENGTH]
        self.key_hash = agent_key_digest(key)
        return key
