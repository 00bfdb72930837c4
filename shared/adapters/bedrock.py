"""The intent parser port on Amazon Bedrock (seed 003's chat in AWS).

One Converse call per message, with one tool whose input schema is the training intent
(:data:`shared.intent.INTENT_SCHEMA`) and the model made to call it (``toolChoice``), at
temperature 0. What it answers is checked exactly as the rules' reading is
(:func:`shared.intent.from_fields`): models against the catalogue, datasets only among
the caller's own (their names are in the prompt; ids never leave the platform), numbers
within bounds. Any failure (an error, a throttle, a timeout, an answer without the tool
call or not an object) falls back to the rules, so the chat always answers.
"""

from __future__ import annotations

import logging
from typing import Any

from shared import intent
from shared.intent import INTENT_SCHEMA, INTENT_TOOL, ParseContext, Parsed, RulesParser

log = logging.getLogger(__name__)

SYSTEM = (
    "You read one message of a chat in which a person describes an image model to train "
    "(Korean, English or Japanese). Call the tool with only what this message states: the "
    "task (classification or detection), the model name exactly as written, the number and "
    "names of the classes in the user's words, which of the user's datasets it names (one "
    "of the names listed, exactly), and epochs, batch size, learning rate, optimizer and "
    "image size if given. A short answer fills the fields the assistant asked for last. "
    "Set confirm only when the message just agrees to start training. Never invent values."
)


class BedrockIntentParser:
    def __init__(
        self,
        client: Any,
        model_id: str,
        *,
        fallback: Any | None = None,
        max_tokens: int = 1024,
    ) -> None:
        self.client = client
        self.model_id = model_id
        self.fallback = fallback or RulesParser()
        self.max_tokens = max_tokens

    def request(self, text: str, context: ParseContext) -> dict[str, Any]:
        """The Converse request for one message."""
        return {
            "modelId": self.model_id,
            "system": [{"text": SYSTEM}],
            "messages": [{"role": "user", "content": [{"text": intent.prompt(text, context)}]}],
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": INTENT_TOOL,
                            "description": "Record the training intent this message states.",
                            "inputSchema": {"json": INTENT_SCHEMA},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": INTENT_TOOL}},
            },
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": 0},
        }

    @staticmethod
    def tool_input(response: dict[str, Any]) -> Any:
        """The input of the intent tool's call in a Converse response; ValueError if none."""
        content = response.get("output", {}).get("message", {}).get("content", [])
        for block in content:
            use = block.get("toolUse") if isinstance(block, dict) else None
            if use and use.get("name") == INTENT_TOOL:
                return use.get("input")
        raise ValueError(
            f"the model did not call {INTENT_TOOL} (stop: {response.get('stopReason')})"
        )

    def parse(self, text: str, context: ParseContext) -> Parsed:
        try:
            response = self.client.converse(**self.request(text, context))
            return intent.from_fields(self.tool_input(response), text, context)
        except Exception:  # any failure of the model: the rules answer instead
            log.warning(
                "Bedrock intent parsing failed; reading the message by rules", exc_info=True
            )
            return self.fallback.parse(text, context)
