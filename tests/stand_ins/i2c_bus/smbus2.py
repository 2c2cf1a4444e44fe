"""Stand-in for ``smbus2`` over the register-level model of the Sense HAT's chips.

Put this directory first on ``sys.path`` (``PYTHONPATH=tests/stand_ins/i2c_bus``)
and code that does ``import smbus2`` gets this module, with the calls smbus2
0.6 has (``SMBus(bus, force)``, ``open``, ``close``, the context manager,
``read_byte_data``, ``write_byte_data``, ``read_i2c_block_data``,
``write_i2c_block_data``), talking to ``sense_hat_chips.current()``: the board
installed with ``sense_hat_chips.install(board)``, else the one
``EDGE_AGENT_TEST_I2C`` describes.

As the real module does, ``open`` opens the device node for real
(``os.open(path, O_RDWR)``, here under the board's ``dev`` folder), so a missing
``/dev/i2c-N`` raises FileNotFoundError and one the user may not open
PermissionError; the ``ioctl`` calls become the model's answers (EREMOTEIO for
an address nobody acknowledges, EBUSY for one a kernel driver holds).
"""

import os
import sys

try:
    import sense_hat_chips
except ImportError:  # only this folder is on sys.path: the model is one level up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sense_hat_chips

__version__ = "0.6.1+sense-hat-model"
I2C_SMBUS_BLOCK_MAX = 32
STAND_IN = True  # so a test can tell it from the real module


class SMBus:
    def __init__(self, bus=None, force=False):
        self.fd = None
        self.path = None
        self.address = None
        self.force = force
        self._board = sense_hat_chips.current()
        if bus is not None:
            self.open(bus)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()

    def open(self, bus):
        if not isinstance(bus, (int, str)):
            raise TypeError("Unexpected type(bus)={}".format(type(bus)))
        path = self._board.node(bus)
        self.fd = os.open(path, os.O_RDWR)
        self.path = path

    def close(self):
        if self.fd:
            os.close(self.fd)
            self.fd = None
            self.address = None

    def _set_address(self, address, force=None):
        if self.fd is None:
            raise OSError(9, os.strerror(9))  # EBADF: ioctl on a closed bus
        force = self.force if force is None else force
        if self.address != address:
            self._board.select(self.path, address, force=bool(force))
            self.address = address

    def read_byte_data(self, i2c_addr, register, force=None):
        self._set_address(i2c_addr, force)
        return self._board.read(self.path, i2c_addr, register, 1)[0]

    def write_byte_data(self, i2c_addr, register, value, force=None):
        self._set_address(i2c_addr, force)
        self._board.write(self.path, i2c_addr, register, [value])

    def read_i2c_block_data(self, i2c_addr, register, length, force=None):
        if length > I2C_SMBUS_BLOCK_MAX:
            raise ValueError("Desired block length over %d bytes" % I2C_SMBUS_BLOCK_MAX)
        self._set_address(i2c_addr, force)
        return list(self._board.read(self.path, i2c_addr, register, length))

    def write_i2c_block_data(self, i2c_addr, register, data, force=None):
        if len(data) > I2C_SMBUS_BLOCK_MAX:
            raise ValueError("Data length cannot exceed %d bytes" % I2C_SMBUS_BLOCK_MAX)
        self._set_address(i2c_addr, force)
        self._board.write(self.path, i2c_addr, register, data)

    def __getattr__(self, name):
        # Anything else smbus2 has (word, block, quick, i2c_rdwr...) is not modelled: say so.
        raise NotImplementedError(
            "the smbus2 stand-in does not model SMBus.{} (tests/stand_ins/i2c_bus)".format(name)
        )
