"""ledger.opt_out_many (the import's database part) and the national digits it stores."""

import phonenumbers
import pytest
import sqlalchemy as sa

from consent import ledger
from consent.addresses import phone_digits
from consent.extensions import db
from consent.models import ConsentEvent, Source, Status
from tests import factories


def test_opt_out_many_writes_one_event_per_changed_address(app):
    """New and opted-in addresses are opted out (version + 1, one event each, evidence kept);
    an opted-out one is "already" and gets no event; a carrier block stays."""
    org = factories.make_org()
    system = ledger.Actor.system()
    ledger.opt_in(org, "text", "+12025550101", source=Source.PORTAL, actor=system)
    ledger.opt_out(org, "text", "+12025550102", source=Source.ADMIN, actor=system)
    ledger.opt_out(
        org, "text", "+12025550103", source=Source.SMS_KEYWORD, actor=system, carrier_block=True
    )
    ledger.opt_in(org, "text", "+12025550103", source=Source.SMS_KEYWORD, actor=system)
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    rows = [
        ledger.BulkRow(address, {"file": "f.csv", "row": n}, note="bulk")
        for n, address in enumerate(
            ["+12025550100", "+12025550101", "+12025550102", "+12025550103", "+12025550100"]
        )
    ]
    result = ledger.opt_out_many(org, "text", rows, source=Source.IMPORT, actor=system)
    db.session.commit()
    assert result == {
        "+12025550100": "imported",
        "+12025550101": "imported",
        "+12025550102": "already",
        "+12025550103": "imported",
    }
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == before + 3
    db.session.expire_all()
    new = ledger.current(org, "text", "+12025550100")
    assert (new.status, new.version, new.source, new.note, new.digits) == (
        Status.OPTED_OUT,
        1,
        Source.IMPORT,
        "bulk",
        "2025550100",
    )
    event = db.session.get(ConsentEvent, new.last_event_id)
    assert (event.from_status, event.to_status, event.state_version) == (None, Status.OPTED_OUT, 1)
    assert event.evidence == {
        "file": "f.csv",
        "row": 4,
    }  # of duplicates in one call, the last counts
    was_in = ledger.current(org, "text", "+12025550101")
    assert (was_in.status, was_in.version) == (Status.OPTED_OUT, 2)
    assert db.session.get(ConsentEvent, was_in.last_event_id).from_status == Status.OPTED_IN


@pytest.mark.parametrize("region", ["US", "GB", "IT", "DE", "MX", "IN", "BR", "AU", "JP", "FR"])
def test_phone_digits_are_the_national_number(region):
    """The fast national digits equal phonenumbers' national significant number."""
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
        example = phonenumbers.example_number_for_type(region, kind)
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        assert phone_digits(e164) == phonenumbers.national_significant_number(example)
