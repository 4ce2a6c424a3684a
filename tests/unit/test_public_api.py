"""Keep `scheduler.__all__` honest: everything public is exported, everything exported exists."""

import scheduler
import scheduler.errors


def test_all_names_exist_and_are_unique() -> None:
    assert len(set(scheduler.__all__)) == len(scheduler.__all__)
    for name in scheduler.__all__:
        assert hasattr(scheduler, name), name


def test_no_public_name_left_out_of_all() -> None:
    public = {
        name
        for name, member in vars(scheduler).items()
        if not name.startswith("_") and getattr(member, "__module__", "").startswith("scheduler.")
    }
    assert public <= set(scheduler.__all__), public - set(scheduler.__all__)


def test_every_error_is_exported() -> None:
    assert set(scheduler.errors.__all__) <= set(scheduler.__all__)
    for name in scheduler.errors.__all__:
        assert issubclass(getattr(scheduler, name), scheduler.SchedulerError)


def test_clients_are_exported() -> None:
    for name in ("SchedulerClient", "AsyncSchedulerClient", "Schedule", "Cancel"):
        assert name in scheduler.__all__
