"""The host application's own models: what its autogenerate compares the database with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class HostBase(DeclarativeBase):
    pass


class ProcessingJob(HostBase):
    __tablename__ = "processing_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PerformanceMetric(HostBase):
    __tablename__ = "performance_metrics"

    id: Mapped[int] = mapped_column(primary_key=True)
    metric_name: Mapped[str] = mapped_column(Text)
    value: Mapped[float] = mapped_column(Float)
