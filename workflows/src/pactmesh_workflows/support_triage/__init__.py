"""support-triage: answer from the semantic cache or the knowledge base, or hand over
to a person.

A knowledge-base answer is redrafted for the requester by the ``drafting`` model, whose
tokens are streamed (LangGraph's custom stream; the engine publishes them). The
knowledge base's answer is cached per tenant (this flow answers general questions,
personalises nothing and has no side effect), never the drafted reply, which quotes the
asker's own words; a hand-over to a person (or an agent's answer) is never cached. A
cached answer is served without a drafted reply. Requests
routing will not guess about come here too, for a person to triage.
"""

from __future__ import annotations

from pactmesh_contracts.actions.triage import TriageHandover
from pactmesh_contracts.tools.kb import KB_SEARCH
from pydantic import BaseModel, ConfigDict

from pactmesh_workflows.definition import Routing, WorkflowDefinition
from pactmesh_workflows.gates import GateSpec

NAME = "support-triage"


class TriageInput(BaseModel):
    """Support triage needs nothing beyond the request text."""

    model_config = ConfigDict(extra="ignore")


class TriageOutput(BaseModel):
    """The answer sent to the requester, and where it came from."""

    model_config = ConfigDict(extra="forbid")

    answer: str
    """The substance: the knowledge-base article's answer, or the agent's text."""
    source: str
    """``knowledge_base``, ``cache`` or ``agent``."""
    article_id: str | None = None
    reply: str | None = None
    """The message drafted for the requester from ``answer`` (streamed token by token),
    when a drafting model wrote one."""
    drafted_by: str | None = None
    """The model that drafted ``reply``, when one did."""
    similarity: float | None = None
    """For ``cache``: the cosine between this question and the one answered before."""


HUMAN_TRIAGE = GateSpec(
    rule="support.human_triage",
    step="human_triage",
    summary="A support request the knowledge base cannot answer confidently",
    action=TriageHandover,
)
"""Every hand-over goes to a support agent (no condition: it always fires)."""

WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Answer from the knowledge base, or hand over to a support agent.",
    package=__name__,
    input_model=TriageInput,
    output_model=TriageOutput,
    actions=(TriageHandover,),
    tools=(KB_SEARCH,),
    routing=Routing(
        description=(
            "questions about accounts, logins, the app or website, plans, delivery status "
            "and anything else for customer support"
        ),
        examples=(
            "What is the way to reset a forgotten password?",
            "I can't log in to my account, it says my email is unknown",
            "My parcel hasn't shown up and the tracking page hasn't updated since Monday",
            "How can I change the delivery address on my profile?",
            "The mobile app crashes every time I open the settings page",
            "How do I upgrade my plan to the premium tier?",
            "I never received the verification email for my new account",
            "What are your customer service opening hours?",
            "How do I cancel my membership?",
            "Two-factor authentication codes are not arriving on my phone",
            "Can I pay by bank transfer, or only by credit card?",
            "The checkout page shows an error when I enter my card details",
            "Do you offer gift wrapping, and where do I find your warranty terms?",
        ),
        keywords=(
            (
                r"\bpassword\b|\blog ?in\b|\blog(ged|ging)? (in|out)\b|\blocked out\b|\baccount\b",
                2.0,
            ),
            (r"\bwhere is my order\b|\btrack", 2.0),
            (r"\bsubscription\b|\bmembership\b|\bplan\b|\bcancel\b", 1.5),
            (r"\bhow (do|can) i\b|^(how|where|what|when|is there|do you|can i)\b", 1.0),
            (r"\b(app|website|browser|e-?mail|profile|settings|error|crash(es)?)\b", 1.0),
            (r"\bhelp\b|\bissue\b|\bproblem\b", 0.5),
        ),
    ),
    gates=(HUMAN_TRIAGE,),
    human_triage=True,
)
