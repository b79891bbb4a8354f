"""k-anonymity over the patients of an extract, with generalisation before suppression.

The quasi-identifiers are everything a released Patient says: age (birth year, or an age band),
gender, place (ZIP3, state, country) and whether and when the patient died. The extract does not
copy Patient resources, it rebuilds each one from its generalised quasi-identifiers
(`patient_resource`), so two patients in one group are released as Patient resources that are
identical except for their pseudonymous id. k-anonymity then holds for what is released, not for
a summary of it.

Generalisation follows a fixed ladder (`LADDER`), from birth year and ZIP3 to 20-year bands and
country. `anonymise` takes the first rung that suppresses at most ``max_suppression`` of the
patients; if none does, the rung that suppresses the fewest (the earliest on a tie). A patient
in a group smaller than k at that rung is suppressed. If fewer than k patients remain — which
means none remain, since every group kept has k — nothing is released, and `refusal` says why.

Ages are counted as reference year minus birth year (the age reached during the reference
year). "90+" and "unknown" are categories of their own at every rung.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from node.records.fhir import GENDERS

from node.research.deid_rules import OLDEST_EXACT_AGE, age_group_extension, year_of, zip3_of
from node.research.safe_harbor import is_age_90_plus

UNKNOWN = "unknown"
NINETY_PLUS = "90+"
AGE_SCHEMES = {"year": "birth year", "5y": "5-year age bands", "10y": "10-year age bands", "20y": "20-year age bands"}
PLACE_SCHEMES = {"zip3": "ZIP3 and state", "state": "state", "country": "country"}
_BAND_WIDTH = {"5y": 5, "10y": 10, "20y": 20}


@dataclass(frozen=True, slots=True, order=True, kw_only=True)
class QuasiIdentifiers:
    """What a released Patient says about the patient."""

    age: str = UNKNOWN  # a birth year "1984", a band "40-49", "90+" or "unknown"
    gender: str = UNKNOWN
    zip3: str | None = None
    state: str | None = None
    country: str | None = None
    deceased: str | None = None  # None, "yes", or the year of death

    def as_dict(self) -> dict[str, Any]:
        """The quasi-identifiers as JSON-ready data (absent values left out)."""
        fields = {"age": self.age, "gender": self.gender, "zip3": self.zip3, "state": self.state,
                  "country": self.country, "deceased": self.deceased}
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class Generalisation:
    """One rung of the ladder: how coarse age and place are."""

    age: str
    place: str

    def __post_init__(self) -> None:
        if self.age not in AGE_SCHEMES or self.place not in PLACE_SCHEMES:
            raise ValueError(f"unknown generalisation {self.age}/{self.place}")

    def describe(self) -> dict[str, str]:
        """Human-readable names of the two choices."""
        return {"age": AGE_SCHEMES[self.age], "place": PLACE_SCHEMES[self.place]}


LADDER: tuple[Generalisation, ...] = (
    Generalisation(age="year", place="zip3"),
    Generalisation(age="5y", place="zip3"),
    Generalisation(age="10y", place="zip3"),
    Generalisation(age="10y", place="state"),
    Generalisation(age="20y", place="state"),
    Generalisation(age="20y", place="country"),
)


def quasi_identifiers(patient: Mapping[str, Any], *, reference_year: int) -> QuasiIdentifiers:
    """The quasi-identifiers of a de-identified Patient resource."""
    birth_year = year_of(patient.get("birthDate"))
    if is_age_90_plus(patient) or (birth_year is not None and reference_year - birth_year > OLDEST_EXACT_AGE):
        age = NINETY_PLUS
    elif birth_year is not None and birth_year <= reference_year:
        age = f"{birth_year:04d}"
    else:
        age = UNKNOWN
    gender = patient.get("gender") if isinstance(patient.get("gender"), str) and patient["gender"] in GENDERS else UNKNOWN
    addresses = patient.get("address")
    address = addresses[0] if isinstance(addresses, list) and addresses and isinstance(addresses[0], dict) else {}
    deceased = None
    if patient.get("deceasedBoolean") is True:
        deceased = "yes"
    elif (death_year := year_of(patient.get("deceasedDateTime"))) is not None:
        deceased = f"{death_year:04d}"
    return QuasiIdentifiers(age=age, gender=str(gender), zip3=zip3_of(address.get("postalCode")),
                            state=_text(address.get("state")), country=_text(address.get("country")),
                            deceased=deceased)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def merge(copies: list[QuasiIdentifiers]) -> QuasiIdentifiers:
    """One patient seen by several custodians: keep what all copies agree on, forget the rest."""
    if len(copies) == 1:
        return copies[0]

    def agreed(name: str, otherwise: str | None) -> Any:
        values = {getattr(copy, name) for copy in copies}
        return values.pop() if len(values) == 1 else otherwise

    # A death recorded by one custodian only is still a death; its year is forgotten.
    died = "yes" if any(copy.deceased for copy in copies) else None
    return QuasiIdentifiers(age=agreed("age", UNKNOWN), gender=agreed("gender", UNKNOWN),
                            zip3=agreed("zip3", None), state=agreed("state", None),
                            country=agreed("country", None), deceased=agreed("deceased", died))


def generalise(qi: QuasiIdentifiers, level: Generalisation, *, reference_year: int) -> QuasiIdentifiers:
    """The quasi-identifiers at a rung of the ladder."""
    age = qi.age
    if level.age != "year" and age.isdigit():  # a birth year; "90+" and "unknown" stay
        years = reference_year - int(age)
        width = _BAND_WIDTH[level.age]
        low = years // width * width
        age = f"{low}-{min(low + width - 1, OLDEST_EXACT_AGE)}"
    deceased = "yes" if level.age != "year" and qi.deceased is not None else qi.deceased
    zip3 = qi.zip3 if level.place == "zip3" else None
    state = qi.state if level.place in ("zip3", "state") else None
    return replace(qi, age=age, deceased=deceased, zip3=zip3, state=state)


def patient_resource(pseudonym: str, qi: QuasiIdentifiers) -> dict[str, Any]:
    """The Patient resource released for a patient: built from its quasi-identifiers only."""
    out: dict[str, Any] = {"resourceType": "Patient", "id": pseudonym}
    if qi.age == NINETY_PLUS:
        out["extension"] = [age_group_extension(OLDEST_EXACT_AGE + 1)]
    elif "-" in qi.age:
        low, high = qi.age.split("-")
        out["extension"] = [age_group_extension(int(low), int(high))]
    elif qi.age != UNKNOWN:
        out["birthDate"] = qi.age
    if qi.gender != UNKNOWN:
        out["gender"] = qi.gender
    if qi.deceased == "yes":
        out["deceasedBoolean"] = True
    elif qi.deceased is not None:
        out["deceasedDateTime"] = qi.deceased
    address = {name: value for name, value in (("state", qi.state), ("postalCode", qi.zip3), ("country", qi.country))
               if value is not None}
    if address:
        out["address"] = [address]
    return out


Q = TypeVar("Q", bound=Hashable)  # what patients are grouped by (their QuasiIdentifiers)


@dataclass(frozen=True, slots=True, kw_only=True)
class KAnonymity(Generic[Q]):
    """The outcome of k-anonymity: who is kept, who is suppressed and why, the groups kept."""

    k: int
    kept: frozenset[str]
    suppressed: Mapping[str, str]
    groups: Mapping[Q, int]

    @property
    def k_reached(self) -> int | None:
        """The smallest group released, None if nothing is."""
        return min(self.groups.values()) if self.groups else None

    @property
    def refusal(self) -> str | None:
        """Why nothing may be released, or None."""
        if len(self.kept) < self.k:
            return (f"only {len(self.kept)} of {len(self.kept) + len(self.suppressed)} patient(s) would remain "
                    f"after k-anonymity with k={self.k}, fewer than k: nothing is released")
        return None


def suppression_reason(group_size: int, k: int) -> str:
    """The reason given for a suppressed patient; it names no quasi-identifier value."""
    return f"k-anonymity: in a group of {group_size} patient(s), fewer than k={k}"


def apply_k_anonymity(patients: Mapping[str, Q], k: int) -> KAnonymity[Q]:
    """Suppress every patient whose quasi-identifiers are shared by fewer than k patients."""
    if k < 1:
        raise ValueError("k must be at least 1")
    sizes = Counter(patients.values())
    kept = frozenset(p for p, qi in patients.items() if sizes[qi] >= k)
    suppressed = {p: suppression_reason(sizes[qi], k) for p, qi in patients.items() if sizes[qi] < k}
    groups = {qi: n for qi, n in sizes.items() if n >= k}
    return KAnonymity(k=k, kept=kept, suppressed=suppressed, groups=groups)


@dataclass(frozen=True, slots=True, kw_only=True)
class Anonymisation:
    """The rung chosen, the k-anonymity outcome there, and each patient's generalised identifiers."""

    generalisation: Generalisation
    result: KAnonymity[QuasiIdentifiers]
    quasi_identifiers: Mapping[str, QuasiIdentifiers]


def anonymise(
    patients: Mapping[str, QuasiIdentifiers],
    k: int,
    *,
    reference_year: int,
    ladder: tuple[Generalisation, ...] = LADDER,
    max_suppression: float = 0.1,
) -> Anonymisation:
    """Generalise along the ladder, then suppress groups smaller than k (see the module doc)."""
    if not ladder:
        raise ValueError("the ladder needs at least one rung")
    if not 0 <= max_suppression <= 1:
        raise ValueError("max_suppression is a fraction between 0 and 1")
    best: Anonymisation | None = None
    for level in ladder:
        generalised = {p: generalise(qi, level, reference_year=reference_year) for p, qi in patients.items()}
        outcome = Anonymisation(generalisation=level, result=apply_k_anonymity(generalised, k),
                                quasi_identifiers=generalised)
        if len(outcome.result.suppressed) <= max_suppression * len(patients):
            return outcome
        if best is None or len(outcome.result.suppressed) < len(best.result.suppressed):
            best = outcome
    assert best is not None
    return best
