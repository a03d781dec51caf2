"""OAuth tokens at rest: encrypted with the KMS key in the sync table, never readable from the raw item."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from closeloop.aws import KmsTokenCipher
from closeloop.errors import ConfigurationError
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.store import DynamoStore, TokenState


@pytest.fixture
def aws() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
        yield client, key_id


def encrypted_store(client: Any, key_id: str) -> DynamoStore:
    return DynamoStore("sync", client, cipher=KmsTokenCipher(key_id, boto3.client("kms", region_name="us-east-1")))


def raw_item(client: Any, connection: str) -> str:
    item = client.get_item(TableName="sync", Key={"PK": {"S": f"CONN#{connection}"}, "SK": {"S": "TOKEN"}})["Item"]
    return repr(item)


def test_after_a_refresh_the_raw_item_holds_no_token_plaintext(aws: tuple[Any, str]) -> None:
    client, key_id = aws
    store = encrypted_store(client, key_id)
    # Given a connection that refreshes through the store with the KMS cipher
    grant = TokenGrant(access_token="at-secret-value-1", expires_in=1800, refresh_token="rt-secret-value-1")
    tokens = RefreshingTokens(
        "xero", store, seed=lambda fresh: "rt-seed-value", refresh=lambda t: grant, write_back=lambda t: None
    )
    # When it refreshes
    assert tokens.access_token() == "at-secret-value-1"
    # Then the table holds neither token in plaintext, and the store reads them back
    raw = raw_item(client, "xero")
    for secret in ("at-secret-value-1", "rt-secret-value-1", "rt-seed-value"):
        assert secret not in raw
    state = store.get_token("xero")
    assert state is not None
    assert (state.access_token, state.refresh_token) == ("at-secret-value-1", "rt-secret-value-1")
    # And a store without the key cannot read them (nor can anyone reading the table)
    with pytest.raises(ConfigurationError, match="TOKEN_KEY_ID"):
        DynamoStore("sync", client).get_token("xero")


def test_a_ciphertext_moved_to_another_connection_does_not_decrypt(aws: tuple[Any, str]) -> None:
    client, key_id = aws
    store = encrypted_store(client, key_id)
    store.put_token("a", TokenState(access_token="at-a", access_expires_at=1.0, refresh_token="rt-a", version=1))
    item = client.get_item(TableName="sync", Key={"PK": {"S": "CONN#a"}, "SK": {"S": "TOKEN"}})["Item"]
    item["PK"] = {"S": "CONN#b"}
    client.put_item(TableName="sync", Item=item)
    with pytest.raises(Exception, match="InvalidCiphertext"):
        store.get_token("b")


def test_a_plaintext_item_from_before_encryption_is_read_once_and_rewritten_encrypted(aws: tuple[Any, str]) -> None:
    client, key_id = aws
    # Given a token item written in plaintext by the previous release
    DynamoStore("sync", client).put_token(
        "xero", TokenState(access_token="at-old", access_expires_at=1.0, refresh_token="rt-old", version=1)
    )
    assert "rt-old" in raw_item(client, "xero")
    store = encrypted_store(client, key_id)
    # When the new release reads it, it gets the tokens
    state = store.get_token("xero")
    assert state is not None
    assert (state.access_token, state.refresh_token) == ("at-old", "rt-old")
    # And its next put replaces the plaintext with ciphertext
    store.put_token("xero", TokenState(access_token="at-new", access_expires_at=2.0, refresh_token="rt-old", version=2))
    raw = raw_item(client, "xero")
    assert "rt-old" not in raw
    assert "at-new" not in raw
    assert "at-old" not in raw
    assert store.token_metadata("xero") == TokenState("", 2.0, "", version=2)
