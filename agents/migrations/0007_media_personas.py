from django.db import migrations

from agents.starter_personas import MEDIA_PERSONA_SETTINGS, MEDIA_PERSONAS


def create_media_personas(apps, schema_editor):
    Persona = apps.get_model("agents", "Persona")
    for data in MEDIA_PERSONAS:
        fields = {**data, **MEDIA_PERSONA_SETTINGS}
        Persona.objects.get_or_create(slug=fields.pop("slug"), defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("agents", "0006_media_streams")]

    operations = [migrations.RunPython(create_media_personas, migrations.RunPython.noop)]
