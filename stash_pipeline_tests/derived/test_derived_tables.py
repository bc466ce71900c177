"""The derived tables equal the contract (computed independently in plain Python) after every sync path."""


def test_full_sync_derived_tables(derived_env):
    env = derived_env()
    outcome = env.full()
    assert sorted(outcome.derived) == sorted(k.to_user_string() for k in env.derived_keys())
    env.assert_consistent()
