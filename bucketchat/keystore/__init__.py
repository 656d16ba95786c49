"""Keys of this device and of the people it trusts, and where they are kept.

    files.py      private files (0600), the ``Keystore`` protocol, user ids
    encrypted.py  the passphrase-encrypted key file (scrypt + AES-256-GCM)
    oskeyring.py  the OS keyring: the only importer of ``keyring``
    device.py     which store to use, the device key, the default identity
    trust.py      pinned keys (``keys trust``)
    transfer.py   moving a key to another device (encrypted PKCS#8)

None of it imports rich or typer: notices are one plain line on stderr.
"""

from bucketchat.keystore.device import (
    create_device_key,
    default_user,
    describe_key,
    identity_path,
    keystore_path,
    load_device_key,
    open_keystore,
    remember_user,
    resolve_user,
    store_device_key,
)
from bucketchat.keystore.encrypted import KEYSTORE_ENV, PASSPHRASE_ENV, FileKeystore
from bucketchat.keystore.files import Keystore, check_user_id
from bucketchat.keystore.oskeyring import OsKeyring, working_keyring
from bucketchat.keystore.transfer import export_private_pem, import_private_pem
from bucketchat.keystore.trust import pin_key, pinned_keys, trusted_keys_path

__all__ = [
    "KEYSTORE_ENV",
    "PASSPHRASE_ENV",
    "FileKeystore",
    "Keystore",
    "OsKeyring",
    "check_user_id",
    "create_device_key",
    "default_user",
    "describe_key",
    "export_private_pem",
    "identity_path",
    "import_private_pem",
    "keystore_path",
    "load_device_key",
    "open_keystore",
    "pin_key",
    "pinned_keys",
    "remember_user",
    "resolve_user",
    "store_device_key",
    "trusted_keys_path",
    "working_keyring",
]
