"""Regression: PySide6 6.12.0 on CPython 3.11 aborted ("Fatal Python error: bool_dealloc")
after about 11,000 signal emissions, from a reference leak on ``True``. pyproject pins
PySide6 below 6.12; this test emits far more than that and checks every one arrived."""

from __future__ import annotations

import PySide6
from PySide6.QtCore import QObject, Signal, Slot

N = 100_000


class Sender(QObject):
    number = Signal(int)
    flag = Signal(bool)
    text = Signal(str)


class Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.numbers = 0
        self.total = 0
        self.trues = 0
        self.texts = 0

    @Slot(int)
    def on_number(self, value: int) -> None:
        self.numbers += 1
        self.total += value

    @Slot(bool)
    def on_flag(self, value: bool) -> None:
        self.trues += bool(value)

    @Slot(str)
    def on_text(self, value: str) -> None:
        self.texts += 1


def test_100k_signal_emissions_all_arrive(qapp):
    print(f"PySide6 {PySide6.__version__}")
    sender, receiver = Sender(), Receiver()
    sender.number.connect(receiver.on_number)
    sender.flag.connect(receiver.on_flag)
    sender.text.connect(receiver.on_text)
    for i in range(N):
        sender.number.emit(i)
        sender.flag.emit(True)  # the 6.12.0 leak was on the True singleton
    for _ in range(N // 10):
        sender.text.emit("step")
    assert receiver.numbers == N
    assert receiver.total == N * (N - 1) // 2
    assert receiver.trues == N
    assert receiver.texts == N // 10
