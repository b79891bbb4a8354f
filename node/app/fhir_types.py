"""The names of FHIR R4 resource types, as a constant the ledger rules can trust.

A consent names resource types; a typo ("Observaton") would be a consent that covers, or
withholds, nothing the patient meant. The ledger refuses a name that is not a FHIR resource
type, and says which name was closest. The list is fixed here rather than read from the
installed fhir.resources package at run time, so that every node decides the same way whatever
version it has installed: it was derived from fhir.resources' R4B models (every concrete
Resource subclass; tests/unit/app/test_fhir_types.py checks it still matches).
"""

from __future__ import annotations

import difflib

RESOURCE_TYPES: tuple[str, ...] = (
    "Account", "ActivityDefinition", "AdministrableProductDefinition", "AdverseEvent", "AllergyIntolerance",
    "Appointment", "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct",
    "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry", "ChargeItem",
    "ChargeItemDefinition", "Citation", "Claim", "ClaimResponse", "ClinicalImpression",
    "ClinicalUseDefinition", "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition",
    "Composition", "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric",
    "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference",
    "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare", "EventDefinition",
    "Evidence", "EvidenceReport", "EvidenceVariable", "ExampleScenario", "ExplanationOfBenefit",
    "FamilyMemberHistory", "Flag", "Goal", "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService",
    "ImagingStudy", "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation",
    "ImplementationGuide", "Ingredient", "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location",
    "ManufacturedItemDefinition", "Measure", "MeasureReport", "Media", "Medication",
    "MedicationAdministration", "MedicationDispense", "MedicationKnowledge", "MedicationRequest",
    "MedicationStatement", "MedicinalProductDefinition", "MessageDefinition", "MessageHeader",
    "MolecularSequence", "NamingSystem", "NutritionOrder", "NutritionProduct", "Observation",
    "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization",
    "OrganizationAffiliation", "PackagedProductDefinition", "Parameters", "Patient", "PaymentNotice",
    "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure",
    "Provenance", "Questionnaire", "QuestionnaireResponse", "RegulatedAuthorization", "RelatedPerson",
    "RequestGroup", "ResearchDefinition", "ResearchElementDefinition", "ResearchStudy", "ResearchSubject",
    "RiskAssessment", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen",
    "SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription", "SubscriptionStatus",
    "SubscriptionTopic", "Substance", "SubstanceDefinition", "SupplyDelivery", "SupplyRequest", "Task",
    "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult",
    "VisionPrescription",
)
_KNOWN = frozenset(RESOURCE_TYPES)


def is_resource_type(name: object) -> bool:
    """True for the exact name of a FHIR R4 resource type."""
    return isinstance(name, str) and name in _KNOWN


def closest_resource_type(name: str) -> str | None:
    """The resource type name closest to `name` (a pure function of the constant list), or None."""
    if not isinstance(name, str) or len(name) > 64:
        return None
    folded = {t.lower(): t for t in RESOURCE_TYPES}
    if name.lower() in folded:
        return folded[name.lower()]
    found = difflib.get_close_matches(name, RESOURCE_TYPES, n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_type_message(name: object) -> str:
    """A sentence for a name that is not a resource type, with the closest one if any."""
    shown = repr(str(name)[:64])
    hint = closest_resource_type(name) if isinstance(name, str) else None
    if hint:
        return f"{shown} is not a FHIR R4 resource type; did you mean {hint}?"
    return f"{shown} is not a FHIR R4 resource type (e.g. Observation, Condition, MedicationRequest)"
